#!/usr/bin/env bash
# The Ansible role and playbook (deploy/ansible) against three real systemd nodes from the
# end-to-end test (Debian 12, Docker, the kubelet stand-in), reached through the nsenter
# connection: `--check --diff` changes nothing; a run where the second node's verification fails
# stops with the first migrated, the second rolled back and the third untouched; a run migrates
# all three one after another. Needs root and ansible-core (pip install ansible-core).
set -uo pipefail
source "$(dirname "$0")/lib.sh"

require_tools
command -v ansible-playbook >/dev/null 2>&1 || {
    [ "${CI:-}" = true ] && die "CI=true and ansible-playbook is missing (pip install ansible-core)"
    printf '\n*** SKIPPED Ansible test: ansible-playbook is missing ***\n' >&2
    exit 0
}
WORK=$(mktemp -d /var/tmp/cri-migrate-e2e.XXXXXX)
trap cleanup EXIT
log "building cri-migrate and the kubelet stand-in"
(cd "$REPO" && cargo build --workspace --bins --features cri-migrate/test-hooks --quiet) || die "cargo build failed"
build_rootfs
setup_registries

declare -A PIDS
for n in a1 a2 a3; do
    make_node "$n" 1.23.17 "--network-plugin=cni --pod-infra-container-image=$PAUSE"
    rm -f "$WORK/$n/usr/local/bin/cri-migrate" # the playbook puts it there
    boot_node "$n"
    PIDS[$n]=$NODE_PID
done
for n in a1 a2 a3; do
    NODE_PID=${PIDS[$n]}
    wait_active docker.service 60 && wait_active kubelet.service 60 || die "node $n did not come up"
    node_state "$n" >"$WORK/state.$n"
done

INV="$WORK/inventory"
{
    echo "[docker_nodes]"
    for n in a1 a2 a3; do
        echo "$n ansible_host=${PIDS[$n]} ansible_connection=nsenter ansible_become=false ansible_python_interpreter=/usr/bin/python3"
    done
} >"$INV"
export ANSIBLE_CONFIG="$REPO/deploy/ansible/ansible.cfg"
play() { ansible-playbook -i "$INV" "$REPO/deploy/ansible/playbook.yml" -e "cri_migrate_binary=$REPO/target/debug/cri-migrate" -e "cri_migrate_report_dir=$WORK/reports" "$@"; }
same() { node_state "$1" | diff -u "$WORK/state.$1" - >&2; }
migrated() { [ "$(nsenter -t "${PIDS[$1]}" -a systemctl is-active docker.service)" = inactive ] && grep -q containerd.sock "$WORK/$1/var/lib/kubelet/kubeadm-flags.env"; }
on_docker() { [ "$(nsenter -t "${PIDS[$1]}" -a systemctl is-active docker.service)" = active ] && same "$1"; }
rollback() { nsenter -t "${PIDS[$1]}" -a /usr/local/bin/cri-migrate rollback --yes >/dev/null 2>&1; }

check_mode_changes_nothing() {
    play --check --diff >"$WORK/check.log" 2>&1
    local rc=$?
    check "ansible-playbook --check --diff exits 0" [ "$rc" = 0 ] || { tail -n 40 "$WORK/check.log" >&2; return 1; }
    check "it shows each node's plan" bash -c "[ \$(grep -c '\"+++ b/etc/containerd/config.toml\",' '$WORK/check.log') = 3 ]" &&
        check "a1 unchanged" same a1 && check "a2 unchanged" same a2 && check "a3 unchanged" same a3 &&
        check "no binary left on a node" bash -c "! ls '$WORK'/a1/usr/local/bin/cri-migrate 2>/dev/null" &&
        check "each node's plan saved for the fleet view" bash -c "[ \$(ls '$WORK'/reports/plan/*.json | wc -l) = 3 ]" &&
        check "the fleet view: one row per node, dockershim to containerd, images carried" \
            bash -c "[ \$(grep -cE 'a[123] +dockershim +containerd +[^ ]+ +in-use' '$WORK/check.log') = 3 ]"
}

second_node_fails_and_stops_the_rollout() {
    play >"$WORK/fail.log" 2>&1
    local rc=$?
    check "the playbook fails" [ "$rc" != 0 ] || { tail -n 40 "$WORK/fail.log" >&2; return 1; }
    check "a1 was migrated" migrated a1 &&
        check "a2 was rolled back (its report says so)" grep -q '"result": "rolled-back"' "$WORK/fail.log" &&
        check "the rollout stopped at a2" grep -q "cri-migrate exited 7 on a2" "$WORK/fail.log" &&
        check "a2 is on Docker, every file as before" on_docker a2 &&
        check "a3 was never touched" on_docker a3 &&
        check "a3 has no cri-migrate (the rollout stopped before it)" bash -c "! ls '$WORK'/a3/usr/local/bin/cri-migrate 2>/dev/null"
}

all_three_one_after_another() {
    rollback a1
    check "a1 back on Docker" on_docker a1 || return 1
    # With --drain through a kubectl on the control host (the fake of tests/fakes: no cluster
    # runs here): drain before, uncordon after, node by node.
    mkdir -p "$WORK/kubectl"
    FAKE_STATE="$WORK/kubectl" play -e cri_migrate_drain=true -e "cri_migrate_kubectl=$REPO/tests/fakes/kubectl" >"$WORK/all.log" 2>&1
    local rc=$?
    check "the playbook exits 0" [ "$rc" = 0 ] || { tail -n 40 "$WORK/all.log" >&2; return 1; }
    check "a1 migrated" migrated a1 && check "a2 migrated" migrated a2 && check "a3 migrated" migrated a3 &&
        check "one host at a time (three plays of one host)" bash -c "[ \$(grep -c '^PLAY \\[Move nodes' '$WORK/all.log') = 3 ]" &&
        check "each node's JSON report printed" bash -c "[ \$(grep -c '\"result\": \"migrated\"' '$WORK/all.log') = 3 ]" &&
        check "drained before and uncordoned after, one node after another" \
            diff -u <(printf '%s\n' "drain a1" "uncordon a1" "drain a2" "uncordon a2" "drain a3" "uncordon a3") \
            <(awk '{print $1, $2}' "$WORK/kubectl/kubectl.log") &&
        check "the fleet view after the rollout: every node migrated" \
            bash -c "[ \$(grep -cE 'a[123] +dockershim +containerd .* migrated' '$WORK/all.log') = 3 ]"
}

# a2's verification fails: its test image does not exist.
sed -i 's|^a2 .*|& cri_migrate_extra_args='"'"'["--test-image", "'"$REGISTRY"'/test/missing:1"]'"'"'|' "$INV"

scenario "A1. ansible-playbook --check --diff shows the plans and changes nothing" check_mode_changes_nothing
scenario "A2. the second node fails: the first migrated, the second rolled back, the third untouched" second_node_fails_and_stops_the_rollout
# The failing host variable goes: the full run.
sed -i 's| cri_migrate_extra_args=.*||' "$INV"
scenario "A3. one run migrates all three, one after another" all_three_one_after_another

for n in a1 a2 a3; do stop_node "$n"; done
summary
