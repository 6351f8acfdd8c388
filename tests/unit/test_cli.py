import subprocess
import sys

import pytest

from vkpy import __version__
from vkpy.cli import main


def test_version_prints_the_package_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith(f"vkpy {__version__} (Python ")


def test_unknown_command_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_console_script_is_installed():
    bin_dir = sys.executable.rsplit("/", 1)[0]
    out = subprocess.run([f"{bin_dir}/vkpy", "version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("vkpy ")
