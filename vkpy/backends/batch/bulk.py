"""Many pods staged and submitted in one remote command, each to its own job. Pure.

One archive carries every pod's work directory (relative to the node's base); the
script extracts it aside, then for each pod, a few at a time in parallel:

- ``status/_jobid`` exists: the pod has its job already (``existing``);
- ``status/_submitting`` exists without it: an earlier attempt may have submitted and
  lost the answer, so the queue is asked by name (``spec/_existing.argv``), and the
  script's own ``begin`` record is read for a job that has left the queue. A job found
  is recorded (``existing``); a queue that cannot answer leaves the pod ``unsure``, to
  be retried; only a queue that answers "none" lets it submit again;
- otherwise the staged directory replaces whatever a cut staging left, the marker is
  written, and only then does the submit command (``spec/_submit.argv``) run, its job
  id recorded in ``status/_jobid`` by the same command (``submitted``, or ``refused``
  with its exit status and error output).

So the command can run again after any cut, on any connection: a pod is never
submitted twice, and no pod costs a queue query unless its answer was lost.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from vkpy.backends.batch import workdir
from vkpy.backends.batch.naming import UID, Layout
from vkpy.backends.batch.script import PRIVATE_MODE, StagedFile, Submission, nul_joined
from vkpy.transport import Completed

SUBMIT_ARGV = "spec/_submit.argv"
EXISTING_ARGV = "spec/_existing.argv"
# The script's exit status when it could not make, or fill, its staging directory:
# nothing was submitted.
NOT_STAGED = (70, 71)

# $1 base, $2 parallel submissions, then the pods as "<uid>" or "<uid>:<group>"; the
# archive on stdin. Each answer is one line "<outcome> <uid> <detail>" (a short line:
# one atomic write).
SCRIPT = r"""set -u
base=$1; parallel=$2; shift 2
incoming=$(mktemp -d "$base/.incoming.XXXXXX") || exit 70  # NOT_STAGED
trap 'rm -rf -- "$incoming"' EXIT
tar -x -p --no-same-owner -f - -C "$incoming" || exit 71  # NOT_STAGED
export base incoming
load() { argv=(); while IFS= read -r -d '' word; do argv+=("$word"); done < "$1"; }
record() {  # uid job: the job id, then the answer. Written in place, by the shell (a
  # process per pod costs more than its submission here): a reader sees no file, an
  # empty one or the id, and empty means "none yet", as the file not being there.
  printf '%s\n' "$2" > "$base/$1/status/_jobid"
  printf 'submitted %s %s\n' "$1" "$2"
}
one() {
  uid=${1%%:*}; dir=$base/$uid; st=$base/$uid/status
  if [ -s "$st/_jobid" ]; then
    printf 'existing %s %s\n' "$uid" "$(head -n 1 "$st/_jobid")"; return 0
  fi
  if [ -e "$st/_submitting" ]; then
    load "$dir/spec/_existing.argv"
    if ! out=$("${argv[@]}" 2>/dev/null); then printf 'unsure %s -\n' "$uid"; return 0; fi
    case $out in
      ''|'[]'|'[ ]') ;;
      *) printf 'asked %s %s\n' "$uid" "$(printf '%s' "$out" | base64 -w 0)"; return 0 ;;
    esac
    began=$(awk '$1 == "begin" && NF >= 4 { id = $4 } END { print id }' "$st/_job" 2>/dev/null)
    if [ -n "$began" ]; then
      printf '%s\n' "$began" > "$st/_jobid"; printf 'existing %s %s\n' "$uid" "$began"; return 0
    fi
  else
    if ! { rm -rf -- "$dir" && mv -- "$incoming/$uid" "$dir" && : > "$st/_submitting"; }; then
      why=$(printf 'cannot stage %s' "$dir" | base64 -w 0)
      printf 'refused %s 73:%s\n' "$uid" "$why"; return 0
    fi
  fi
  alone "$uid"
}
alone() {  # uid: staged and marked, no job yet: its own submit command
  load "$base/$1/spec/_submit.argv"
  if out=$(cd "$base/$1" && "${argv[@]}" 2>"$incoming/$1.err"); then
    record "$1" "${out%%[; ]*}"
  else
    printf 'refused %s %d:%s\n' "$1" "$?" "$(base64 -w 0 < "$incoming/$1.err")"
  fi
}
export -f load record one alone
each() { printf '%s\0' "$@" | xargs -0 -r -n 1 -P "$parallel" bash -c 'one "$1"' one; }
# A pod of a group with neither job id nor marker is fresh: the fresh pods are staged
# with one mv and marked here, in this shell (no process per pod), then submitted with
# their group; every other pod goes through `one`, in parallel.
singles=(); fresh=(); groups=(); mkdir -p "$incoming/.groups"
for pod in "$@"; do
  uid=${pod%%:*}; group=${pod#"$uid"}; group=${group#:}; st=$base/$uid/status
  if [ -n "$group" ] && [ ! -s "$st/_jobid" ] && [ ! -e "$st/_submitting" ]; then
    fresh+=("$uid"); groups+=("$group")
  else
    singles+=("$pod")
  fi
done
[ "${#singles[@]}" -eq 0 ] || each "${singles[@]}"
if [ "${#fresh[@]}" -gt 0 ]; then
  stale=(); moving=()
  for uid in "${fresh[@]}"; do
    [ ! -e "$base/$uid" ] || stale+=("$base/$uid"); moving+=("$incoming/$uid")
  done
  [ "${#stale[@]}" -eq 0 ] || rm -rf -- "${stale[@]}"
  mv -- "${moving[@]}" "$base/" 2>/dev/null
  for i in "${!fresh[@]}"; do
    uid=${fresh[$i]}
    if [ ! -e "$incoming/$uid" ] && [ -d "$base/$uid/status" ] &&
        : > "$base/$uid/status/_submitting"; then
      printf '%s\n' "$uid" >> "$incoming/.groups/${groups[$i]}"
    else
      each "$uid"  # not staged here: alone, which stages it again or says why not
    fi
  done
fi
# Each group: one description (the first pod's head, every pod's item, its tail), one
# submit command; its answer "<cluster>.<first> - <cluster>.<last>" numbers the jobs in
# the items' order. A group that fails submitted nothing (one transaction); its pods,
# marked, go through `one` again: the queue is asked, then each submits alone, so that
# only a pod the batch system refuses fails.
for path in "$incoming"/.groups/*; do
  [ -f "$path" ] || continue
  mapfile -t members < "$path"
  if [ "${#members[@]}" -eq 1 ]; then alone "${members[0]}"; continue; fi
  first=$base/${members[0]}/spec; items=()
  for m in "${members[@]}"; do items+=("$base/$m/spec/_group.item"); done
  cat -- "$first/_group.head" "${items[@]}" "$first/_group.tail" > "$path.sub"
  load "$first/_group.argv"
  if out=$("${argv[@]}" "$path.sub" 2>/dev/null) &&
      [[ $out =~ ^([0-9]+)\.([0-9]+)\ -\ ([0-9]+)\.([0-9]+) ]] &&
      [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[3]}" ] &&
      [ $(( BASH_REMATCH[4] - BASH_REMATCH[2] + 1 )) -eq "${#members[@]}" ]; then
    cluster=${BASH_REMATCH[1]}; proc=${BASH_REMATCH[2]}
    for m in "${members[@]}"; do record "$m" "$cluster.$proc"; proc=$((proc + 1)); done
  else
    each "${members[@]}"
  fi
done
"""

Kind = Literal["submitted", "existing", "asked", "refused", "unsure"]


@dataclass(frozen=True)
class Outcome:
    """What the bulk command did with one pod."""

    kind: Kind
    job_id: str = ""  # submitted, existing
    answer: Completed | None = None  # refused: the submit command's; asked: the queue's


def staged(submission: Submission) -> tuple[StagedFile, ...]:
    """The pod's files, with the argv files the script runs and its group's parts."""
    pod_dir = submission.pod_dir
    files = [
        *submission.files,
        StagedFile(f"{pod_dir}/{SUBMIT_ARGV}", nul_joined(submission.command), PRIVATE_MODE),
        StagedFile(f"{pod_dir}/{EXISTING_ARGV}", nul_joined(submission.existing), PRIVATE_MODE),
    ]
    if (group := submission.group) is not None:
        parts = {"argv": nul_joined(group.argv), "head": group.head}
        parts |= {"item": group.item, "tail": group.tail}
        files += [
            StagedFile(f"{pod_dir}/spec/_group.{k}", v, PRIVATE_MODE) for k, v in parts.items()
        ]
    return tuple(files)


def archive(layout: Layout, submissions: Sequence[Submission], *, mtime: float) -> bytes:
    """Every pod's work directory in one tar archive, relative to the node's base."""
    dirs = [d for s in submissions for d in s.dirs]
    files = [f for s in submissions for f in staged(s)]
    return workdir.archive(layout.base, dirs, files, mtime=mtime)


def argv(layout: Layout, submissions: Sequence[Submission], *, parallel: int) -> list[str]:
    pods = [s.uid if s.group is None else f"{s.uid}:{s.group.key}" for s in submissions]
    return ["bash", "-c", SCRIPT, "bulk-submit", layout.base, str(parallel), *pods]


def parse(output: str) -> dict[str, Outcome]:
    """The script's answer lines → each pod's outcome; a pod without a line has none."""
    outcomes: dict[str, Outcome] = {}
    for line in output.splitlines():
        words = line.split(" ", 2)
        if len(words) != 3 or not UID.match(words[1]):
            continue
        kind, uid, detail = words
        if kind in ("submitted", "existing") and detail.strip():
            outcomes[uid] = Outcome(kind, job_id=detail.strip())  # type: ignore[arg-type]
        elif kind == "asked":
            outcomes[uid] = Outcome("asked", answer=Completed(("queue",), 0, _unb64(detail)))
        elif kind == "refused":
            status, _, error = detail.partition(":")
            code = int(status) if status.isdecimal() else 1
            outcomes[uid] = Outcome(
                "refused", answer=Completed(("submit",), code, b"", _unb64(error))
            )
        elif kind == "unsure":
            outcomes[uid] = Outcome("unsure")
    return outcomes


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return text.encode()
