"""The batch script template every pod's job runs (bash 4.2 or later).

`script.render` fills the ``@NAME@`` placeholders with shell-quoted values; nothing of
the pod but validated names reaches this text. Containers' argv and environment are
read at run time from NUL-separated files (see `runtime`), so the script needs no
quoting of pod data at all. `report` reads what it writes to ``status/``.
"""

TEMPLATE = r"""#!/bin/bash
# vkpy job for pod @POD@ (uid @UID@) of node @NODE@. Written by vkpy; do not edit.
# Runs the init containers one after the other (fail-fast), then the app containers side
# by side, restarting them as the pod's restartPolicy says; records every run in status/
# and exits with the worst exit code. Each container's argv and environment are read
# from NUL-separated files in spec/: no value of the pod passes through a shell.
umask 077
cd -- @DIR@ || exit 1  # the pod's directory; "." where HTCondor copied it to the job

POD_UID=@UID_Q@
GRACE=@GRACE@          # seconds from SIGTERM to SIGKILL when the pod is stopped
KILL_WAIT=@KILL_WAIT@  # KillWait (Slurm), job_max_vacate_time (HTCondor): when it ends the job
DEADLINE=@DEADLINE@    # epoch second when activeDeadlineSeconds runs out; 0: none
RESTART=@RESTART@      # app containers: Never | OnFailure | Always
INIT_RESTART=@INIT_RESTART@
BACKOFF=@BACKOFF@      # first restart back-off in seconds; it doubles up to 30 times this
RUNTIME=@RUNTIME@      # podman | apptainer | singularity
RUNTIME_BIN=@RUNTIME_BIN@
INIT=(@INIT@)
APPS=(@APPS@)
MEMORY=(@MEMORY@)      # emptyDir volumes on the node's memory (/dev/shm)
SUBDIRS=(@SUBDIRS@)    # emptyDir subPaths to create
POD_IP_MARK=$'\x1evkpy:status.podIP\x1e'  # the downward API's pod IP, filled in below
NODE_IP_IS_POD_IP=@NODE_IP_IS_POD_IP@  # 1: containers share the node's network
POD_IP=""

stopping=""
signalled=0
watchdog=""

now() { printf '%(%s)T' -1; }

# What a container writes goes to its log as it comes, one record a line, after the time
# it came, as the kubelet's CRI logs do: "2006-01-02T15:04:05.000000000Z line" (UTC,
# fixed width, so stamps sort as text), for `kubectl logs --since` and `--timestamps`.
# A "+" instead of the space marks a piece with no newline after it (the next record
# goes on with the same line), so output that ends mid-line shows at once. Perl when the
# node has it (core modules only); else bash itself, slower, to the microsecond with
# bash 5, a line's unfinished end once a second.
STAMP_PERL='$| = 1;
while (sysread(STDIN, my $chunk, 65536)) {
    my $t = Time::HiRes::time();
    my $s = int($t);
    my ($sec, $min, $hour, $day, $mon, $year) = gmtime($s);
    my $stamp = sprintf "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ",
        $year + 1900, $mon + 1, $day, $hour, $min, $sec, ($t - $s) * 1e9;
    for my $piece (split /(?<=\n)/, $chunk) {
        my $mark = chomp($piece) ? " " : "+";
        print "$stamp$mark$piece\n";
    }
}'

stamp_lines() {  # stamp_lines: stdin's lines, stamped, without perl
    local line t s f mark
    while :; do
        if IFS= read -r -t 1 line; then
            mark=" "
        elif [ $? -gt 128 ]; then  # nothing more for a second: what came of the line
            [ -n "$line" ] || continue
            mark=+
        elif [ -n "$line" ]; then  # the end, without a newline
            mark=+
        else
            break
        fi
        t=${EPOCHREALTIME:-}
        if [ -n "$t" ]; then
            s=${t%[.,]*} f=${t#*[.,]}000
        else
            printf -v s '%(%s)T' -1
            f=000000000
        fi
        printf '%(%Y-%m-%dT%H:%M:%S)T.%sZ%s%s\n' "$s" "$f" "$mark" "$line"
    done
}

stamp() {  # stamp LOG DONE: stdin's lines appended to LOG, stamped; DONE once all are
    # The job's signals are for the containers: their output must not break on them. A
    # process a container left behind may keep it going after the job, holding nothing
    # of the job's but the log.
    trap '' TERM INT
    exec > /dev/null 2>&1
    export TZ=UTC0
    if perl -MTime::HiRes -e 1 > /dev/null 2>&1; then  # perl-base alone lacks Time::HiRes
        perl -MTime::HiRes -e "$STAMP_PERL" >> "$1"
    else
        stamp_lines >> "$1"
    fi
    : > "$2"
}

clock_ms() {  # milliseconds since the epoch (bash 5); bash 4: whole seconds, rounded up
    if [ -n "${EPOCHREALTIME:-}" ]; then
        local t=${EPOCHREALTIME/[.,]/}
        printf '%s\n' "${t:0:-3}"
    else
        printf '%s000\n' "$(($(now) + ${1:-0}))"
    fi
}

record() {  # record FILE WORDS...: one line in status/FILE
    local file=$1
    shift
    printf '%s\n' "$*" >> "status/$file"
}

wait_for() {  # wait_for PID: its exit status, through any signal this shell traps
    local rc again
    while :; do
        signalled=0
        wait "$1"
        rc=$?
        [ "$signalled" = 1 ] || return "$rc"
        kill -0 "$1" 2> /dev/null && continue
        wait "$1" 2> /dev/null
        again=$?
        [ "$again" = 127 ] && return "$rc"
        return "$again"
    done
}

grace_now() {  # the grace period in force; re-read while stopping, as delete() may shorten it
    local g=$GRACE why=""
    if [ -s grace ]; then
        read -r g < grace  # delete() says how long
    else
        [ -s stop ] && read -r why < stop
        # Slurm (or HTCondor) SIGKILLs the whole job KillWait seconds after its SIGTERM:
        # the containers must be killed through the runtime before that.
        local most=$((KILL_WAIT > 2 ? KILL_WAIT - 2 : 0))
        [ "$why" = signal ] && [ "$g" -gt "$most" ] && g=$most
    fi
    printf '%s\n' "$g"
}

running() {  # running NAME PID: whether the container still runs
    # A Podman container outlives its `podman run` client (conmon holds it), which a
    # signal to the job may have killed: Podman says whether it runs.
    local state
    if [ "$RUNTIME" = podman ]; then
        state=$("$RUNTIME_BIN" container inspect --format '{{.State.Status}}' \
            "vkpy-$POD_UID-$1" 2> /dev/null)
        case $?:$state in
            *:running | *:stopping | *:paused) return 0 ;;
            125:) ;;        # no such container (yet, or any more)
            *:) return 0 ;; # no answer (the question was killed by the job's signal)
        esac
    fi
    kill -0 "$2" 2> /dev/null  # created, exited or unknown: as long as its client runs
}

stop_container() {  # stop_container NAME: TERM now, KILL once the grace period in force ends
    # Slurm signals every process of the job at once: the stopper must outlive that.
    trap '' TERM INT
    local c=$1 pid began soft="" name="vkpy-$POD_UID-$1"
    read -r pid < "run/$c.pid" 2> /dev/null || return 0
    began=$(clock_ms 1)  # rounded up where only seconds are known: never early
    while running "$c" "$pid"; do
        if [ $(($(clock_ms) - began)) -ge $(($(grace_now) * 1000)) ]; then
            # Only Podman can kill a container: it is conmon's child, not ours.
            [ "$RUNTIME" = podman ] && "$RUNTIME_BIN" kill --signal KILL "$name" > /dev/null 2>&1
            kill -KILL "$pid" 2> /dev/null
            break
        fi
        if [ "$RUNTIME" = podman ]; then
            # Podman sends the image's stop signal; asked again if the container did not
            # exist yet (stopped while it started) or the request was killed.
            if [ -z "$soft" ] || ! kill -0 "$soft" 2> /dev/null; then
                "$RUNTIME_BIN" stop --time "$(grace_now)" "$name" > /dev/null 2>&1 &
                soft=$!
            fi
        elif [ -z "$soft" ]; then
            kill -TERM "$pid" 2> /dev/null
            soft=sent
        fi
        sleep 0.2
    done
    return 0
}

record_image() {  # record_image NAME: the ID of the container's image, when it is here
    # already (else Podman pulls it as it runs the container, and the ID stays unknown)
    local image="" id
    [ "$RUNTIME" = podman ] && [ -s "spec/$1.image" ] || return 0
    IFS= read -r -d '' image < "spec/$1.image"
    id=$("$RUNTIME_BIN" image inspect --format '{{.Id}}' -- "$image" 2> /dev/null) || return 0
    case $id in
        "" | *[!0-9a-f]*) ;; # not one image ID: nothing said
        *) record "$1" image "$id" ;;
    esac
    return 0
}

launch() {  # launch NAME RUN: run the container once; its exit status is ours
    local c=$1 n=$2 item pid rc code i
    local -a argv=() envs=()
    while IFS= read -r -d '' item; do
        argv+=("${item//"$POD_IP_MARK"/$POD_IP}")
    done < "spec/$c.argv"
    if [ -s "spec/$c.rel" ]; then  # bind options whose source is under this directory
        while read -r i; do argv[i]="${argv[i]%%=*}=$PWD/${argv[i]#*=}"; done < "spec/$c.rel"
    fi
    while IFS= read -r -d '' item; do
        envs+=("${item//"$POD_IP_MARK"/$POD_IP}")
    done < "spec/$c.env"
    rm -f "run/$c.stamped"
    record_image "$c"
    record "$c" start "$(now)" "$n"
    (  # stdout only: a redirect's process substitution leaves its own descriptor open
        # in the command, so a container's processes would hold the log open after it.
        exec {log}> >(stamp "logs/$c.$n.log" "run/$c.stamped")
        exec env -- "${envs[@]}" "${argv[@]}" < /dev/null >&"$log" 2>&1 {log}>&-
    ) &
    pid=$!
    printf '%s\n' "$pid" > "run/$c.pid"
    [ -e stop ] && stop_container "$c" &  # stopped while it started
    wait_for "$pid"
    rc=$?
    if [ "$RUNTIME" = podman ]; then
        # A signalled `podman run` exits 0 at once, whatever its container does: ask
        # Podman how the container ended (waiting for it if it still runs), then remove it.
        if code=$("$RUNTIME_BIN" wait "vkpy-$POD_UID-$c" 2> /dev/null) && [ -n "$code" ]; then
            rc=$code
            # `podman wait` answers 0 at once for a container that was created but never
            # started (`podman run` signalled in between): it never ran, so it did not
            # complete either.
            if [ "$rc" -eq 0 ] && [ "$("$RUNTIME_BIN" inspect --format '{{.State.Status}}' \
                "vkpy-$POD_UID-$c" 2> /dev/null)" = created ]; then
                rc=137
            fi
        elif [ "$rc" -eq 0 ]; then
            # No container (it is removed only below), yet `podman run` said 0: signalled
            # before Podman had created it. It never ran, let alone completed, whether or
            # not this shell's own trap has seen the signal yet.
            rc=137
        fi
        "$RUNTIME_BIN" rm --force --time 0 "vkpy-$POD_UID-$c" > /dev/null 2>&1
    fi
    rm -f "run/$c.pid"
    for ((i = 0; i < 20; i++)); do  # the last lines in the log before the run is over
        [ -e "run/$c.stamped" ] && break
        sleep 0.1
    done
    record "$c" exit "$rc" "$(now)" "$n"
    : > "logs/$c.$n.done"
    return "$rc"
}

supervise() {  # supervise NAME POLICY: run the container, restarting it per POLICY
    trap 'signalled=1' TERM INT
    local c=$1 policy=$2 n rc delay i
    n=$(grep -c '^start ' "status/$c" 2> /dev/null)
    n=${n:-0}  # a requeued job carries on counting
    while :; do
        launch "$c" "$n"
        rc=$?
        n=$((n + 1))
        [ -e stop ] && return "$rc"
        case $policy in
            Never) return "$rc" ;;
            OnFailure) [ "$rc" -eq 0 ] && return 0 ;;
        esac
        i=$((n > 6 ? 5 : n - 1))
        delay=$((BACKOFF << i))  # the kubelet's back-off: 10 s doubling to 5 min
        [ "$delay" -gt $((BACKOFF * 30)) ] && delay=$((BACKOFF * 30))
        record "$c" wait "$(($(now) + delay))"
        for ((i = 0; i < delay; i++)); do
            [ -e stop ] && return "$rc"
            sleep 1
        done
    done
}

on_stop() {  # on_stop WHY: stop every container (WHY: signal | deadline)
    signalled=1
    if [ -n "$stopping" ]; then
        # Stopping already (the deadline): a SIGTERM now is the batch system ending the
        # job, whose SIGKILL follows; the stoppers see it and shorten their grace period.
        [ "$1" = signal ] && printf '%s\n' signal > stop
        return 0
    fi
    stopping=$1
    printf '%s\n' "$1" > stop
    record _job stop "$(now)" "$1"
    local c
    for c in "${INIT[@]}" "${APPS[@]}"; do
        [ -s "run/$c.pid" ] && stop_container "$c" &
    done
    return 0
}

finish() {  # finish CODE
    local v target c
    if [ -n "$stopping" ] && [ "$RUNTIME" = podman ]; then
        # Stopped early: no container may outlive the job, not even one whose `podman
        # run` was signalled while Podman was still creating it.
        for c in "${INIT[@]}" "${APPS[@]}"; do
            "$RUNTIME_BIN" rm --force --time 0 "vkpy-$POD_UID-$c" > /dev/null 2>&1
        done
    fi
    record _job end "$1" "$(now)"
    [ -n "$watchdog" ] && kill "$watchdog" 2> /dev/null
    for v in "${MEMORY[@]}"; do
        target=$(readlink "volumes/$v") && rm -rf -- "$target"
    done
    exit "$1"
}

trap 'on_stop signal' TERM INT
trap 'on_stop deadline' USR1
mkdir -p run status logs volumes
rm -f stop run/*.pid
if [ -s grace ]; then  # deleted before it ran
    record _job end 143 "$(now)"
    exit 143
fi
ip=$(hostname -I 2> /dev/null)
ip=${ip%% *}
[ "$NODE_IP_IS_POD_IP" = 1 ] && POD_IP=$ip
record _job begin "$(now)" "$(hostname)" "${SLURM_JOB_ID:--}" "${ip:--}"
for v in "${MEMORY[@]}"; do
    target=$(mktemp -d "/dev/shm/vkpy-$POD_UID-$v.XXXXXX") || finish 1
    chmod 0777 "$target"
    rm -rf "volumes/$v" && ln -s "$target" "volumes/$v"
done
for d in "${SUBDIRS[@]}"; do
    mkdir -p -m 0777 "volumes/$d"
done
if [ "$DEADLINE" -gt 0 ]; then
    (
        sleeper=""
        trap 'kill "$sleeper" 2> /dev/null; exit 0' TERM
        left=$((DEADLINE - $(now)))
        if [ "$left" -gt 0 ]; then
            sleep "$left" &
            sleeper=$!
            wait "$sleeper"
        fi
        kill -USR1 $$
    ) > /dev/null 2>&1 &
    watchdog=$!
fi

worst=0
for c in "${INIT[@]}"; do
    [ -n "$stopping" ] && break
    supervise "$c" "$INIT_RESTART" &
    wait_for $!
    rc=$?
    if [ "$rc" -ne 0 ]; then
        worst=$rc
        break
    fi
done
if [ -z "$stopping" ] && [ "$worst" -eq 0 ]; then
    pids=()
    for c in "${APPS[@]}"; do
        supervise "$c" "$RESTART" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait_for "$pid"
        rc=$?
        [ "$rc" -gt "$worst" ] && worst=$rc
    done
fi
finish "$worst"
"""
