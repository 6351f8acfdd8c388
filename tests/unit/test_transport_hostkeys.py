import asyncssh
import pytest

from vkpy.transport.hostkeys import HostKeyPolicy, known_hosts_pattern


@pytest.fixture(scope="module")
def keys():
    return asyncssh.generate_private_key("ssh-ed25519"), asyncssh.generate_private_key(
        "ssh-ed25519"
    )


def line(key, pattern="[127.0.0.1]:2222"):
    return f"{pattern} {key.export_public_key().decode().strip()}\n"


def test_pattern():
    assert known_hosts_pattern("login", 22) == "login"
    assert known_hosts_pattern("127.0.0.1", 2222) == "[127.0.0.1]:2222"


def test_unknown_host_is_refused_by_default(tmp_path, keys):
    known = tmp_path / "known_hosts"
    known.write_text("")
    policy = HostKeyPolicy(known, accept_new=False)
    assert not policy.decide("127.0.0.1", "127.0.0.1", 2222, keys[0])
    assert "is not in" in policy.refusal and "accept_new_host_keys" in policy.refusal
    assert known.read_text() == ""


def test_accept_new_trusts_and_records_a_new_host(tmp_path, keys):
    known = tmp_path / "ssh" / "known_hosts"
    policy = HostKeyPolicy(known, accept_new=True)
    assert policy.prepare() == str(known)
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    assert policy.decide("127.0.0.1", "127.0.0.1", 2222, keys[0])
    assert known.read_text() == line(keys[0])
    # Recorded: the same key is now listed, so asyncssh accepts it without asking.
    listed = asyncssh.match_known_hosts(str(known), "127.0.0.1", "127.0.0.1", 2222)[0]
    assert {k.export_public_key() for k in listed} == {keys[0].export_public_key()}


def test_a_changed_key_is_refused_even_with_accept_new(tmp_path, keys):
    known = tmp_path / "known_hosts"
    known.write_text(line(keys[0]))
    policy = HostKeyPolicy(known, accept_new=True)
    assert not policy.decide("127.0.0.1", "127.0.0.1", 2222, keys[1])
    assert "differs" in policy.refusal
    assert known.read_text() == line(keys[0])


def test_missing_known_hosts_file(tmp_path):
    assert HostKeyPolicy(tmp_path / "nope", accept_new=False).prepare() is None
