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

# A recorded backend is a process group: its leader (the recorded pid, a `sh -c`) and everything
# it started. Signalling it through its leader alone missed a child that ignores SIGTERM once the
# leader had died of it. So the groups are proved ours once, then signalled as groups until empty.
# Ours: its leader is still the recorded process (same start time), or the leader is gone and every
# live member of the group started after it did (a pid is not reused as a group id while the
# group has members).

# start_of PID: field 22 of /proc/PID/stat (empty if gone or a zombie); the command name in
# field 2 may hold spaces, so fields are counted from the last ")".
start_of() {
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
  # shellcheck disable=SC2086
  set -- ${stat##*) }
  [ "$1" = Z ] && return 0
  shift 19
  echo "$1"
}

owned=""
[ -f "$state_file" ] && while read -r pid start _; do
  case $pid in '' | *[!0-9]*) continue ;; esac
  now=$(start_of "$pid")
  if [ -n "$now" ]; then
    [ "$now" = "$start" ] && owned="$owned $pid"
    continue
  fi
  # The leader is gone: its group, if it has members all started since the leader did.
  members=0
  others=0
  for stat_file in /proc/[0-9]*/stat; do
    { read -r stat <"$stat_file"; } 2>/dev/null || continue
    # shellcheck disable=SC2086
    set -- ${stat##*) }
    [ "$3" = "$pid" ] || continue
    [ "$1" = Z ] && continue
    shift 19
    if [ "$1" -ge "$start" ] 2>/dev/null; then members=$((members + 1)); else others=$((others + 1)); fi
  done
  [ "$members" -gt 0 ] && [ "$others" -eq 0 ] && owned="$owned $pid"
done <"$state_file"

# signal_owned SIGNAL: sends SIGNAL to every owned group; succeeds if one still had a member.
signal_owned() {
  found=1
  for pgid in $owned; do
    kill -s "$1" -- "-$pgid" 2>/dev/null && found=0
  done
  return $found
}

if signal_owned TERM; then
  waited=0
  # Signal 0 only asks whether a group still has a member.
  while [ "$waited" -lt "$grace_tenths" ] && signal_owned 0; do
    sleep 0.1
    waited=$((waited + 1))
  done
  signal_owned KILL
fi
exit 0
