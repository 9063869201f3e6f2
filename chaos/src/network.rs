//! The run's own network: a bridge, and a network namespace for each part of the system that a
//! fault must be able to cut off on its own: each queue node, each executor, and the services
//! (the orchestrator and the three backends, which talk to each other on their loopback). Each
//! namespace joins the bridge by a veth pair; the root namespace (the runner and its clients)
//! joins it by one more and holds the bridge's address.
//!
//! Two ways to cut a member off, neither of which the product can see coming or has a switch
//! for:
//! - *Isolation*: the member's bridge-side veth goes down; it reaches nothing and nothing reaches
//!   it (an executor cut off from the cluster, or a queue node cut off from everyone).
//! - *A Raft partition*: the bridge drops every frame between one queue node and the other
//!   nodes (nftables, bridge family, in the switch's namespace), silently, as a broken link
//!   would; clients (the runner, the orchestrator, the executors) still reach the node, so reads
//!   and writes through a node that lost its peers (a deposed leader) are tried.
//!
//! The bridge lives in a namespace of its own (the "switch"), not in the root namespace: on a
//! Docker host `bridge-nf-call-iptables` is on (a global sysctl) and the FORWARD policy is DROP,
//! so frames bridged in the root namespace between two nodes would be dropped; in the switch's
//! namespace they meet its own firewall, which holds only the run's partition rules. The host's
//! firewall is never touched.
//!
//! Every name and the /24 are derived from the run's tag and checked free, so two runs never
//! collide. [`Network`] deletes everything it made when dropped (success, error, panic or a
//! signal that ends the run); `scripts/chaos` clears the names of a run that was killed before
//! it could (every namespace whose name holds the tag).

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, bail};

/// Linux's limit on an interface name (IFNAMSIZ less the terminating zero); netns names are kept
/// as short so one rule covers both.
const MAX_NAME_LEN: usize = 15;
/// The second octet of every run's 10.x.y.0/24.
const SUBNET_SECOND_OCTET: u8 = 213;
/// The host part of the bridge's address (the root namespace's end).
const BRIDGE_HOST: u8 = 1;
/// The services' host part; queue node `n` gets `NODE_HOST_BASE + n`, executor `n`
/// `EXECUTOR_HOST_BASE + n`.
const SERVICES_HOST: u8 = 5;
const NODE_HOST_BASE: u8 = 10;
const EXECUTOR_HOST_BASE: u8 = 20;
/// The nftables table and chain (bridge family, in the switch's namespace) holding the Raft
/// partition's rules.
const NFT_TABLE: &str = "chaos";
const NFT_CHAIN: &str = "forward";

/// What a member of the network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Queue node `n`.
    QueueNode(u64),
    /// Executor `n`.
    Executor(u64),
    /// The orchestrator and the backends.
    Services,
}

impl Role {
    /// The process (or group of processes) this member holds, as the nemesis names it.
    pub fn name(self) -> String {
        match self {
            Role::QueueNode(n) => format!("queue-{n}"),
            Role::Executor(n) => format!("executor-{n}"),
            Role::Services => "services".to_owned(),
        }
    }

    /// The short key in the member's interface and namespace names.
    fn key(self) -> String {
        match self {
            Role::QueueNode(n) => format!("q{n}"),
            Role::Executor(n) => format!("e{n}"),
            Role::Services => "s".to_owned(),
        }
    }

    fn host(self) -> u8 {
        match self {
            Role::QueueNode(n) => NODE_HOST_BASE + n as u8,
            Role::Executor(n) => EXECUTOR_HOST_BASE + n as u8,
            Role::Services => SERVICES_HOST,
        }
    }
}

/// The names and addresses of one run's network, before or after it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The namespace holding the bridge.
    pub switch: String,
    pub bridge: String,
    /// The root namespace's veth end, with the bridge's address.
    pub root_veth: String,
    /// Its peer, on the bridge.
    pub uplink_veth: String,
    pub subnet_octet: u8,
    pub members: Vec<Member>,
}

/// One member's namespace and the veth pair that joins it to the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub role: Role,
    pub namespace: String,
    /// The veth end in the switch's namespace, on the bridge: down means isolated.
    pub host_veth: String,
    /// The veth end inside the member's namespace, carrying its address.
    pub inner_veth: String,
    pub addr: Ipv4Addr,
}

impl Layout {
    /// The layout for run `run_tag` (six hex digits), `node_count` queue nodes and
    /// `executor_count` executors, on 10.213.`octet`.0/24.
    pub fn new(run_tag: &str, subnet_octet: u8, node_count: u64, executor_count: u64) -> Layout {
        let roles = (1..=node_count)
            .map(Role::QueueNode)
            .chain((1..=executor_count).map(Role::Executor))
            .chain([Role::Services]);
        let members = roles
            .map(|role| Member {
                role,
                namespace: format!("chn{run_tag}-{}", role.key()),
                host_veth: format!("chv{run_tag}-{}", role.key()),
                inner_veth: format!("chp{run_tag}-{}", role.key()),
                addr: Ipv4Addr::new(10, SUBNET_SECOND_OCTET, subnet_octet, role.host()),
            })
            .collect();
        Layout {
            switch: format!("chs{run_tag}"),
            bridge: format!("chb{run_tag}"),
            root_veth: format!("chr{run_tag}"),
            uplink_veth: format!("chu{run_tag}"),
            subnet_octet,
            members,
        }
    }

    pub fn bridge_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, SUBNET_SECOND_OCTET, self.subnet_octet, BRIDGE_HOST)
    }

    pub fn subnet(&self) -> String {
        format!("10.{SUBNET_SECOND_OCTET}.{}.0/24", self.subnet_octet)
    }

    pub fn member(&self, role: Role) -> anyhow::Result<&Member> {
        self.members
            .iter()
            .find(|member| member.role == role)
            .with_context(|| format!("no {} in the network", role.name()))
    }

    /// The queue nodes, node 1 first.
    pub fn queue_nodes(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|member| matches!(member.role, Role::QueueNode(_)))
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        [
            self.switch.as_str(),
            self.bridge.as_str(),
            self.root_veth.as_str(),
            self.uplink_veth.as_str(),
        ]
        .into_iter()
        .chain(self.members.iter().flat_map(|member| {
            [
                member.namespace.as_str(),
                member.host_veth.as_str(),
                member.inner_veth.as_str(),
            ]
        }))
    }
}

/// The run's network while it exists; dropping it deletes it.
#[derive(Debug)]
pub struct Network {
    layout: Layout,
}

impl Network {
    /// Fails early, naming what is missing, when this process cannot make namespaces and
    /// partition rules.
    pub fn require_capabilities() -> anyhow::Result<()> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            bail!("a chaos run makes network namespaces and a bridge: run it as root");
        }
        ip(&["netns", "list"])
            .context("`ip netns` is unavailable (install iproute2; the kernel needs netns)")?;
        run("nft", &["--version"])
            .context("`nft` is unavailable (install nftables): Raft partitions need it")?;
        Ok(())
    }

    /// Makes the bridge and every member's namespace for run `run_tag`, on the first free /24
    /// from the one the tag suggests.
    pub fn create(
        run_tag: &str,
        suggested_octet: u8,
        node_count: u64,
        executor_count: u64,
    ) -> anyhow::Result<Network> {
        let layout = free_layout(run_tag, suggested_octet, node_count, executor_count)?;
        // From here on, a failure half-way deletes what was made, through Drop.
        let network = Network { layout };
        network.build()?;
        Ok(network)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn build(&self) -> anyhow::Result<()> {
        let layout = &self.layout;
        let switch = layout.switch.as_str();
        let bridge = layout.bridge.as_str();
        ip(&["netns", "add", switch])?;
        ip(&["-n", switch, "link", "set", "lo", "up"])?;
        ip(&["-n", switch, "link", "add", bridge, "type", "bridge"])?;
        ip(&["-n", switch, "link", "set", bridge, "up"])?;
        nft(switch, &["add", "table", "bridge", NFT_TABLE])?;
        nft(
            switch,
            &[
                "add",
                "chain",
                "bridge",
                NFT_TABLE,
                NFT_CHAIN,
                "{ type filter hook forward priority 0; policy accept; }",
            ],
        )?;
        let (root_veth, uplink_veth) = (layout.root_veth.as_str(), layout.uplink_veth.as_str());
        ip(&[
            "link",
            "add",
            root_veth,
            "type",
            "veth",
            "peer",
            "name",
            uplink_veth,
        ])?;
        ip(&["link", "set", uplink_veth, "netns", switch])?;
        ip(&[
            "-n",
            switch,
            "link",
            "set",
            uplink_veth,
            "master",
            bridge,
            "up",
        ])?;
        let bridge_cidr = format!("{}/24", layout.bridge_addr());
        ip(&["addr", "add", &bridge_cidr, "dev", root_veth])?;
        ip(&["link", "set", root_veth, "up"])?;
        for member in &layout.members {
            let ns = member.namespace.as_str();
            ip(&["netns", "add", ns])?;
            ip(&[
                "-n",
                switch,
                "link",
                "add",
                &member.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                &member.inner_veth,
            ])?;
            ip(&["-n", switch, "link", "set", &member.inner_veth, "netns", ns])?;
            ip(&[
                "-n",
                switch,
                "link",
                "set",
                &member.host_veth,
                "master",
                bridge,
                "up",
            ])?;
            let cidr = format!("{}/24", member.addr);
            ip(&["-n", ns, "addr", "add", &cidr, "dev", &member.inner_veth])?;
            ip(&["-n", ns, "link", "set", &member.inner_veth, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Cuts `role`'s member off from everything.
    pub fn isolate(&self, role: Role) -> anyhow::Result<()> {
        self.set_link(role, "down")
    }

    /// Joins `role`'s member to the network again.
    pub fn rejoin(&self, role: Role) -> anyhow::Result<()> {
        self.set_link(role, "up")
    }

    /// Drops every frame between queue node `node_id` and the other queue nodes, both ways;
    /// everything else still reaches it.
    pub fn cut_raft_links(&self, node_id: u64) -> anyhow::Result<()> {
        let cut = self.layout.member(Role::QueueNode(node_id))?;
        let others: Vec<String> = self
            .layout
            .queue_nodes()
            .filter(|member| member.role != cut.role)
            .map(|member| format!("\"{}\"", member.host_veth))
            .collect();
        let others = format!("{{ {} }}", others.join(", "));
        let own = format!("\"{}\"", cut.host_veth);
        for (from, to) in [(&own, &others), (&others, &own)] {
            nft(
                &self.layout.switch,
                &[
                    "add", "rule", "bridge", NFT_TABLE, NFT_CHAIN, "iifname", from, "oifname", to,
                    "drop",
                ],
            )?;
        }
        Ok(())
    }

    /// Removes every Raft partition rule.
    pub fn heal_raft_links(&self) -> anyhow::Result<()> {
        nft(
            &self.layout.switch,
            &["flush", "chain", "bridge", NFT_TABLE, NFT_CHAIN],
        )
    }

    /// Every member joined and every partition healed.
    pub fn heal_all(&self) -> anyhow::Result<()> {
        for member in &self.layout.members {
            self.rejoin(member.role)?;
        }
        self.heal_raft_links()
    }

    /// Takes the switch's end of `role`'s veth `down` or `up`.
    fn set_link(&self, role: Role, state: &str) -> anyhow::Result<()> {
        let member = self.layout.member(role)?;
        ip(&[
            "-n",
            &self.layout.switch,
            "link",
            "set",
            &member.host_veth,
            state,
        ])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        remove(&self.layout);
    }
}

/// Deletes the namespaces (which takes the veth ends in them, and so the pairs: the switch's
/// takes the bridge and its rules) and the root's veth if it is left; what does not exist is
/// skipped.
fn remove(layout: &Layout) {
    for member in &layout.members {
        let _ = ip(&["netns", "del", &member.namespace]);
    }
    let _ = ip(&["netns", "del", &layout.switch]);
    let _ = ip(&["link", "del", &layout.root_veth]);
}

/// The layout for `run_tag` on the first /24 from `suggested_octet` that no interface here
/// uses, with names that fit and are not taken.
fn free_layout(
    run_tag: &str,
    suggested_octet: u8,
    node_count: u64,
    executor_count: u64,
) -> anyhow::Result<Layout> {
    let layout = Layout::new(run_tag, suggested_octet, node_count, executor_count);
    if let Some(long) = layout.names().find(|name| name.len() > MAX_NAME_LEN) {
        bail!("network name {long:?} is longer than {MAX_NAME_LEN} characters");
    }
    let links = ip_output(&["-o", "link", "show"])?;
    let namespaces = ip_output(&["netns", "list"])?;
    if let Some(taken) = layout.names().find(|name| {
        links.contains(&format!(" {name}:"))
            || links.contains(&format!(" {name}@"))
            || namespaces
                .lines()
                .any(|line| line.split_whitespace().next() == Some(name))
    }) {
        bail!("{taken} already exists: another run uses the tag {run_tag}");
    }
    let addresses = ip_output(&["-o", "-4", "addr", "show"])?;
    (0..=u8::MAX)
        .map(|step| suggested_octet.wrapping_add(step))
        .map(|octet| Layout::new(run_tag, octet, node_count, executor_count))
        .find(|candidate| {
            let prefix = format!(" 10.{SUBNET_SECOND_OCTET}.{}.", candidate.subnet_octet);
            !addresses.contains(&prefix)
        })
        .context("every 10.213.x.0/24 is in use here")
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    ip_output(args).map(drop)
}

fn ip_output(args: &[&str]) -> anyhow::Result<String> {
    run("ip", args)
}

/// Runs `nft ARGS` in `namespace`.
fn nft(namespace: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["netns", "exec", namespace, "nft"];
    full.extend_from_slice(args);
    run("ip", &full).map(drop)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run `{program} {}`", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_limit_and_addresses_share_one_subnet() {
        let layout = Layout::new("a1b2c3", 42, 3, 3);
        assert!(layout.names().all(|name| name.len() <= MAX_NAME_LEN));
        assert_eq!(layout.bridge_addr(), Ipv4Addr::new(10, 213, 42, 1));
        assert_eq!(layout.subnet(), "10.213.42.0/24");
        let node = layout.member(Role::QueueNode(3)).expect("node 3");
        assert_eq!(
            (node.addr, node.namespace.as_str()),
            (Ipv4Addr::new(10, 213, 42, 13), "chna1b2c3-q3")
        );
        let executor = layout.member(Role::Executor(2)).expect("executor 2");
        assert_eq!(executor.addr, Ipv4Addr::new(10, 213, 42, 22));
        let services = layout.member(Role::Services).expect("the services");
        assert_eq!(services.addr, Ipv4Addr::new(10, 213, 42, 5));
        assert_eq!(layout.queue_nodes().count(), 3);
        assert!(layout.member(Role::QueueNode(4)).is_err());
        let mut addrs: Vec<Ipv4Addr> = layout.members.iter().map(|member| member.addr).collect();
        addrs.push(layout.bridge_addr());
        addrs.sort();
        addrs.dedup();
        assert_eq!(
            addrs.len(),
            layout.members.len() + 1,
            "addresses are distinct"
        );
    }
}
