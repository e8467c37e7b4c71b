# shellcheck shell=bash
# run_logged LABEL LOGFILE CMD...: run CMD with all its output in LOGFILE and show progress
# instead: on a terminal one line with the elapsed time, updated every second; otherwise (CI)
# one line a minute. On failure the log's last lines are printed. Returns CMD's exit code.
run_logged() {
    local label=$1 log=$2
    shift 2
    local start=$SECONDS rc=0 next=60
    mkdir -p "$(dirname "$log")"
    "$@" >>"$log" 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        if [[ -t 2 ]]; then
            printf '\r  %s ... %dm%02ds (log: %s) ' "$label" $(((SECONDS - start) / 60)) \
                $(((SECONDS - start) % 60)) "$log" >&2
        elif ((SECONDS - start >= next)); then
            printf '  %s ... %ds\n' "$label" $((SECONDS - start)) >&2
            next=$((next + 60))
        fi
    done
    wait "$pid" || rc=$?
    [[ -t 2 ]] && printf '\r\033[K' >&2
    if ((rc == 0)); then
        printf '  %s: done in %ds\n' "$label" $((SECONDS - start)) >&2
    else
        printf '  %s: FAILED (exit %d) after %ds; last lines of %s:\n' "$label" "$rc" \
            $((SECONDS - start)) "$log" >&2
        tail -n 25 "$log" | sed 's/^/    /' >&2
    fi
    return "$rc"
}
