# shellcheck shell=bash
# A three-node RabbitMQ cluster on loopback for scripts/bench, run as root without systemd; sourced,
# not run. It owns every process it starts, by PID: one epmd on a port of its own (the Erlang VMs
# are told not to start one: `-start_epmd false`), and per node the `rabbitmq-server` script
# (which stops its VM on SIGTERM) and that VM. Its data is one folder, removed when it stops.
#
#   rabbitmq_start DIR BASE_PORT   epmd on BASE_PORT, AMQP on BASE_PORT+1..+3, Erlang
#                                  distribution on BASE_PORT+4..+6 (all seven must be free); sets
#                                  rabbitmq_uri (node 1's AMQP URI) and rabbitmq_nodes
#   rabbitmq_ctl NODE ARGS...      rabbitmqctl against node NODE (1..3) of that cluster
#   rabbitmq_stop                  stops what rabbitmq_start started and removes DIR; safe to call
#                                  twice, or after a start that failed half-way
#
# Debian's rabbitmq-server 3.10.8 is installed by the caller (ensure_packages rabbitmq-server);
# its package scripts are not used: /usr/lib/rabbitmq/bin/rabbitmq-server runs the broker as the
# calling user, where /usr/sbin/rabbitmq-server would switch to the rabbitmq user.

rabbitmq_bin=/usr/lib/rabbitmq/bin
rabbitmq_dir=
rabbitmq_epmd_port=
rabbitmq_epmd_pid=
rabbitmq_server_pids=()
rabbitmq_uri=
rabbitmq_nodes=

# Every RabbitMQ program of this cluster runs with the shared cookie in
# $rabbitmq_dir/.erlang.cookie (found through HOME), our epmd (ERL_EPMD_PORT) and no epmd of its
# own (-start_epmd false).
rabbitmq_ctl() {
    local node=$1
    shift
    env HOME="$rabbitmq_dir" ERL_EPMD_PORT="$rabbitmq_epmd_port" ERL_FLAGS="-start_epmd false" \
        "$rabbitmq_bin/rabbitmqctl" -n "rabbit$node@localhost" "$@"
}

# _rabbitmq_wait_port PORT SECONDS: until something listens on 127.0.0.1:PORT.
_rabbitmq_wait_port() {
    local deadline=$((SECONDS + $2))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "rabbitmq: nothing listens on port $1 after $2 s" >&2
            return 1
        fi
        sleep 0.1
    done
}

# _rabbitmq_await NODE SECONDS: until node NODE has started its broker. `await_startup` fails at
# once while the VM has not registered with epmd yet, so it is asked again until the deadline.
_rabbitmq_await() {
    local node=$1 deadline=$((SECONDS + $2))
    until rabbitmq_ctl "$node" await_startup --timeout 10 -q >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "rabbitmq: node $node did not start within $2 s; see $rabbitmq_dir/node-$node/" >&2
            return 1
        fi
        kill -0 "${rabbitmq_server_pids[$((node - 1))]}" 2>/dev/null || {
            echo "rabbitmq: node $node exited; see $rabbitmq_dir/node-$node/" >&2
            return 1
        }
        sleep 0.5
    done
}

rabbitmq_start() {
    local base=$2 node node_dir
    rabbitmq_dir=$1
    rabbitmq_epmd_port=$base
    mkdir -p "$rabbitmq_dir"
    (umask 077 && head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$rabbitmq_dir/.erlang.cookie")
    chmod 400 "$rabbitmq_dir/.erlang.cookie"
    echo '[].' >"$rabbitmq_dir/enabled_plugins"
    : >"$rabbitmq_dir/rabbitmq-env.conf"
    : >"$rabbitmq_dir/rabbitmq.conf"

    epmd -port "$rabbitmq_epmd_port" >"$rabbitmq_dir/epmd.log" 2>&1 </dev/null &
    rabbitmq_epmd_pid=$!
    _rabbitmq_wait_port "$rabbitmq_epmd_port" 30

    for node in 1 2 3; do
        node_dir=$rabbitmq_dir/node-$node
        mkdir -p "$node_dir"
        # Exec'd down to the server script, so that $! is its PID: the script stops its VM on
        # SIGTERM. A background job of a script ignores SIGINT, and so does the server script
        # then: a Ctrl-C at the terminal reaches the caller, which stops the nodes in order.
        (
            exec env HOME="$rabbitmq_dir" ERL_EPMD_PORT="$rabbitmq_epmd_port" \
                ERL_FLAGS="-start_epmd false" \
                RABBITMQ_NODENAME="rabbit$node@localhost" \
                RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
                RABBITMQ_NODE_PORT=$((base + node)) \
                RABBITMQ_DIST_PORT=$((base + 3 + node)) \
                RABBITMQ_MNESIA_BASE="$node_dir/mnesia" \
                RABBITMQ_LOG_BASE="$node_dir/log" \
                RABBITMQ_PID_FILE="$node_dir/rabbitmq.pid" \
                RABBITMQ_CONFIG_FILE="$rabbitmq_dir/rabbitmq.conf" \
                RABBITMQ_ENABLED_PLUGINS_FILE="$rabbitmq_dir/enabled_plugins" \
                RABBITMQ_CONF_ENV_FILE="$rabbitmq_dir/rabbitmq-env.conf" \
                "$rabbitmq_bin/rabbitmq-server"
        ) >"$node_dir/server.log" 2>&1 </dev/null &
        rabbitmq_server_pids+=("$!")
    done
    for node in 1 2 3; do
        _rabbitmq_await "$node" 120
    done
    # Stopping relies on each server script being the VM's parent: checked once.
    local vm_pid
    for vm_pid in $(rabbitmq_vm_pids); do
        grep -qa beam "/proc/$vm_pid/cmdline" 2>/dev/null || {
            echo "rabbitmq: process $vm_pid, a server script's child, is not an Erlang VM" >&2
            return 1
        }
    done
    [[ $(rabbitmq_vm_pids | wc -l) -eq 3 ]] || {
        echo "rabbitmq: the server scripts ${rabbitmq_server_pids[*]} do not run three VMs" >&2
        return 1
    }
    for node in 2 3; do
        rabbitmq_ctl "$node" stop_app -q
        rabbitmq_ctl "$node" join_cluster -q rabbit1@localhost
        rabbitmq_ctl "$node" start_app -q
    done
    rabbitmq_nodes=$(rabbitmq_ctl 1 cluster_status -q --formatter json |
        jq -r '.running_nodes | sort | join(",")')
    if [[ $rabbitmq_nodes != "rabbit1@localhost,rabbit2@localhost,rabbit3@localhost" ]]; then
        echo "rabbitmq: the cluster runs on [$rabbitmq_nodes], not the three nodes" >&2
        return 1
    fi
    # shellcheck disable=SC2034 # read by the caller
    rabbitmq_uri="amqp://guest:guest@127.0.0.1:$((base + 1))/%2f"
    echo "rabbitmq nodes $rabbitmq_nodes, AMQP on ports $((base + 1))-$((base + 3)) (VMs" \
        "$(rabbitmq_vm_pids | paste -sd' '), epmd $rabbitmq_epmd_pid on port" \
        "$rabbitmq_epmd_port), logs in $rabbitmq_dir/node-*/"
}

# rabbitmq_vm_pids: the PID of each node's Erlang VM, one a line, node 1 first. The VM is its
# server script's child (the script runs it in the background and waits, to stop it on SIGTERM).
rabbitmq_vm_pids() {
    local pid
    for pid in "${rabbitmq_server_pids[@]}"; do
        ps -o pid= --ppid "$pid" | tr -d ' ' | head -n 1
    done
}

# _rabbitmq_gone PID SECONDS: waits until PID is gone or a zombie; returns 1 if it is not by then.
_rabbitmq_gone() {
    local deadline=$((SECONDS + $2)) state
    while state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

rabbitmq_stop() {
    local pid vm_pids
    # Read before they stop, so that a VM its script fails to stop is still known by its PID.
    mapfile -t vm_pids < <(rabbitmq_vm_pids)
    # SIGTERM to a server script stops its VM in order and then ends the script.
    for pid in "${rabbitmq_server_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${vm_pids[@]}" "${rabbitmq_server_pids[@]}"; do
        _rabbitmq_gone "$pid" 30 || kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $rabbitmq_epmd_pid ]]; then
        kill -TERM "$rabbitmq_epmd_pid" 2>/dev/null || true
        _rabbitmq_gone "$rabbitmq_epmd_pid" 10 || kill -KILL "$rabbitmq_epmd_pid" 2>/dev/null || true
        wait "$rabbitmq_epmd_pid" 2>/dev/null || true
    fi
    rabbitmq_server_pids=()
    rabbitmq_epmd_pid=
    [[ -z $rabbitmq_dir ]] || rm -rf "$rabbitmq_dir"
}
