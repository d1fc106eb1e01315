#!/bin/sh
# The backend watchdog. The multiplexer primary starts it with a pipe on its stdin that only the
# primary holds, so the pipe closes when the primary is gone, however it ended (kill -9, the OOM
# killer). Then every backend the state file still records is ended: SIGTERM to its process group,
# SIGKILL after the grace. A recorded pid whose start time differs is another process now and is
# never touched. A shell script, not Node: it costs about a megabyte, not forty.
# Usage: backend-watchdog.sh STATE_FILE GRACE_TENTHS_OF_A_SECOND
state_file=$1
grace_tenths=$2

# The primary never writes: this returns at end of input.
while read -r _; do :; done

# signal_recorded SIGNAL: sends SIGNAL to each recorded group still led by the recorded process;
# succeeds if there was at least one.
signal_recorded() {
  sig=$1
  found=1
  [ -f "$state_file" ] || return 1
  while read -r pid start _; do
    case $pid in '' | *[!0-9]*) continue ;; esac
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || continue
    # Field 22 (start time) counts from the last ")": the command name may hold spaces.
    # shellcheck disable=SC2086
    set -- ${stat##*) }
    [ "$1" = Z ] && continue # ended, waiting to be reaped
    shift 19
    if [ "$1" = "$start" ]; then
      kill -s "$sig" -- "-$pid" 2>/dev/null
      found=0
    fi
  done <"$state_file"
  return $found
}

if signal_recorded TERM; then
  waited=0
  # Signal 0 only asks whether a group is still there.
  while [ "$waited" -lt "$grace_tenths" ] && signal_recorded 0; do
    sleep 0.1
    waited=$((waited + 1))
  done
  signal_recorded KILL
fi
exit 0
