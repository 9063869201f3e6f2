# Helpers shared by the scripts in scripts/; sourced, not run.

# ensure_secret FILE WHAT: makes FILE a fresh random secret (mode 600) unless it exists; an
# existing one is kept, so that what was started with it earlier still agrees.
ensure_secret() {
    local file=$1 what=$2
    [[ -s $file ]] && return 0
    mkdir -p "$(dirname "$file")"
    (umask 077 && head -c 32 /dev/urandom | base64 >"$file")
    chmod 600 "$file"
    echo "made a new $what in $file"
}

# ensure_cluster_secret FILE: the queue nodes' shared secret, kept so that a cluster started
# earlier still accepts its nodes.
ensure_cluster_secret() {
    ensure_secret "$1" "cluster secret"
}

# ensure_queue_tokens DIR: the queue clients' tokens, one file per role in DIR (orchestrator,
# executor, admin), each kept once made, so that the nodes and the clients started earlier
# still agree. The queue nodes accept exactly these; a client presents the one of its role.
ensure_queue_tokens() {
    local role
    for role in orchestrator executor admin; do
        ensure_secret "$1/$role" "$role queue token"
    done
}

# ensure_idempotency_secret FILE: the orchestrators' shared secret for card digests in the
# queue's checkout records, kept so that a retry after a restart is still recognised.
ensure_idempotency_secret() {
    ensure_secret "$1" "idempotency secret"
}

# Prints a visible heading for one step of a script.
step() {
    printf '\n==> %s\n' "$*"
}

# Installs the Debian packages given whose commands are missing. Needs root (or sudo), as in CI.
# Honours the caller's `install` variable: when it is "false", a missing package is an error.
ensure_packages() {
    local missing=()
    local package
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    [[ ${#missing[@]} -eq 0 ]] && { echo "already installed: $*"; return 0; }
    if [[ "${install:-true}" != true ]]; then
        echo "missing packages: ${missing[*]} (run without --no-install to install them)" >&2
        return 1
    fi
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "installing: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ensure_venv VENV REQUIREMENT...: a Python virtual environment in VENV holding the PyPI packages
# REQUIREMENT... (pip specifiers). Made afresh unless VENV already holds exactly these: the
# requirements are recorded in VENV/requirements.txt once installed, so a changed pin reinstalls.
ensure_venv() {
    local venv=$1
    shift
    local wanted
    wanted=$(printf '%s\n' "$@")
    if [[ -x $venv/bin/python && -f $venv/requirements.txt ]] &&
        [[ $(<"$venv/requirements.txt") == "$wanted" ]]; then
        return 0
    fi
    command -v python3 >/dev/null || ensure_packages python3
    rm -rf "$venv"
    python3 -m venv "$venv" 2>/dev/null ||
        { rm -rf "$venv" && ensure_packages python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
    echo "$wanted" >"$venv/requirements.txt"
}

# Waits until `curl` gets a success from URL, for at most SECONDS; fails naming the URL.
wait_for_http() {
    local url=$1 seconds=${2:-60}
    local deadline=$((SECONDS + seconds))
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "no answer from $url after ${seconds}s" >&2
            return 1
        fi
        sleep 0.2
    done
}

# Fails when something already listens on the TCP port given.
require_free_port() {
    local port=$1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is already in use; stop what listens there first" >&2
        return 1
    fi
}

# Waits until process PID is gone; a zombie counts as gone (processes started detached by an
# earlier run of a script are reparented, and their new parent may reap them late), but only once
# it is the last of its threads: a multi-threaded process's main thread turns zombie while the
# others are still releasing its memory and sockets (its port), which takes a while for a big one.
wait_gone() {
    local state threads
    while state=$(ps -o stat= -p "$1" 2>/dev/null); do
        threads=$(find "/proc/$1/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        [[ $state == Z* ]] && ((threads <= 1)) && return 0
        sleep 0.05
    done
}

# Prints the PID recorded in PID_FILE when that process still runs PROGRAM, else nothing.
running_pid() {
    local pid_file=$1 program=$2 pid
    [[ -f $pid_file ]] || return 0
    pid=$(<"$pid_file")
    if kill -0 "$pid" 2>/dev/null && grep -q "$program" "/proc/$pid/cmdline" 2>/dev/null; then
        echo "$pid"
    fi
}

# start_detached PID_FILE LOG_FILE COMMAND...: runs COMMAND in its own session (so it outlives
# the script and a Ctrl-C meant for the terminal), appending to LOG_FILE, and records its PID.
start_detached() {
    local pid_file=$1 log_file=$2
    shift 2
    mkdir -p "$(dirname "$log_file")" "$(dirname "$pid_file")"
    setsid "$@" >>"$log_file" 2>&1 </dev/null &
    echo $! >"$pid_file"
}

# stop_pids SIGNAL PID...: signals every PID and waits until each is gone.
stop_pids() {
    local signal=$1 pid
    shift
    [[ $# -gt 0 ]] || return 0
    kill "-$signal" "$@" 2>/dev/null || true
    for pid in "$@"; do wait_gone "$pid"; done
}
