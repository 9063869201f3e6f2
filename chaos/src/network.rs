//! The run's own network: a bridge, and one network namespace per queue node joined to the
//! bridge by a veth pair; the root namespace (backends, orchestrator, executors, the runner)
//! joins it by one more veth pair and holds the bridge's address. Cutting a node off is taking
//! its bridge-side veth down, which the node cannot see coming and the product has no switch for.
//!
//! The bridge lives in a namespace of its own (the "switch"), not in the root namespace: on a
//! Docker host `bridge-nf-call-iptables` is on (a global sysctl) and the FORWARD policy is DROP,
//! so frames bridged in the root namespace between two nodes would be dropped; in the switch's
//! namespace they meet its own, empty, firewall. The host's firewall is never touched.
//!
//! Every name and the /24 are derived from the run's id and checked free, so two runs never
//! collide. [`Network`] deletes everything it made when dropped (success, error, panic or a
//! signal that ends the run); `scripts/chaos` clears the names of a run that was killed before
//! it could.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, bail};

/// Linux's limit on an interface name (IFNAMSIZ less the terminating zero); netns names are kept
/// as short so one rule covers both.
const MAX_NAME_LEN: usize = 15;
/// The second octet of every run's 10.x.y.0/24.
const SUBNET_SECOND_OCTET: u8 = 213;
/// The host part of the bridge's address; node `n` gets `NODE_HOST_BASE + n`.
const BRIDGE_HOST: u8 = 1;
const NODE_HOST_BASE: u8 = 10;

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
    pub nodes: Vec<NodeLink>,
}

/// One queue node's namespace and the veth pair that joins it to the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLink {
    /// The node's id (1-based).
    pub node_id: u64,
    pub namespace: String,
    /// The veth end in the switch's namespace, on the bridge: down means partitioned.
    pub host_veth: String,
    /// The veth end inside the node's namespace, carrying its address.
    pub node_veth: String,
    pub addr: Ipv4Addr,
}

impl Layout {
    /// The layout for run `run_tag` (a few hex digits) and `node_count` nodes, on 10.213.`octet`.0/24.
    pub fn new(run_tag: &str, subnet_octet: u8, node_count: u64) -> Layout {
        let nodes = (1..=node_count)
            .map(|node_id| NodeLink {
                node_id,
                namespace: format!("chq{run_tag}-{node_id}"),
                host_veth: format!("chv{run_tag}-{node_id}"),
                node_veth: format!("chp{run_tag}-{node_id}"),
                addr: Ipv4Addr::new(
                    10,
                    SUBNET_SECOND_OCTET,
                    subnet_octet,
                    NODE_HOST_BASE + node_id as u8,
                ),
            })
            .collect();
        Layout {
            switch: format!("chs{run_tag}"),
            bridge: format!("chb{run_tag}"),
            root_veth: format!("chr{run_tag}"),
            uplink_veth: format!("chu{run_tag}"),
            subnet_octet,
            nodes,
        }
    }

    pub fn bridge_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, SUBNET_SECOND_OCTET, self.subnet_octet, BRIDGE_HOST)
    }

    pub fn subnet(&self) -> String {
        format!("10.{SUBNET_SECOND_OCTET}.{}.0/24", self.subnet_octet)
    }

    pub fn node(&self, node_id: u64) -> anyhow::Result<&NodeLink> {
        self.nodes
            .iter()
            .find(|node| node.node_id == node_id)
            .with_context(|| format!("no queue node {node_id} in the network"))
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        [
            self.switch.as_str(),
            self.bridge.as_str(),
            self.root_veth.as_str(),
            self.uplink_veth.as_str(),
        ]
        .into_iter()
        .chain(self.nodes.iter().flat_map(|node| {
            [
                node.namespace.as_str(),
                node.host_veth.as_str(),
                node.node_veth.as_str(),
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
    /// Fails early, naming what is missing, when this process cannot make namespaces.
    pub fn require_capabilities() -> anyhow::Result<()> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            bail!("a chaos run makes network namespaces and a bridge: run it as root");
        }
        ip(&["netns", "list"])
            .context("`ip netns` is unavailable (install iproute2; the kernel needs netns)")?;
        Ok(())
    }

    /// Makes the bridge and one namespace per node for run `run_tag`, on the first free /24
    /// from the one the tag suggests.
    pub fn create(run_tag: &str, suggested_octet: u8, node_count: u64) -> anyhow::Result<Network> {
        let layout = free_layout(run_tag, suggested_octet, node_count)?;
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
        for node in &layout.nodes {
            let ns = node.namespace.as_str();
            ip(&["netns", "add", ns])?;
            ip(&[
                "-n",
                switch,
                "link",
                "add",
                &node.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                &node.node_veth,
            ])?;
            ip(&["-n", switch, "link", "set", &node.node_veth, "netns", ns])?;
            ip(&[
                "-n",
                switch,
                "link",
                "set",
                &node.host_veth,
                "master",
                bridge,
                "up",
            ])?;
            let node_cidr = format!("{}/24", node.addr);
            ip(&["-n", ns, "addr", "add", &node_cidr, "dev", &node.node_veth])?;
            ip(&["-n", ns, "link", "set", &node.node_veth, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Cuts node `node_id` off from its peers and every client.
    pub fn partition(&self, node_id: u64) -> anyhow::Result<()> {
        self.set_node_link(node_id, "down")
    }

    /// Joins node `node_id` to the network again.
    pub fn heal(&self, node_id: u64) -> anyhow::Result<()> {
        self.set_node_link(node_id, "up")
    }

    /// Takes the switch's end of node `node_id`'s veth `down` or `up`.
    fn set_node_link(&self, node_id: u64, state: &str) -> anyhow::Result<()> {
        let node = self.layout.node(node_id)?;
        ip(&[
            "-n",
            &self.layout.switch,
            "link",
            "set",
            &node.host_veth,
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
/// takes the bridge) and the root's veth if it is left; what does not exist is skipped.
fn remove(layout: &Layout) {
    for node in &layout.nodes {
        let _ = ip(&["netns", "del", &node.namespace]);
    }
    let _ = ip(&["netns", "del", &layout.switch]);
    let _ = ip(&["link", "del", &layout.root_veth]);
}

/// The layout for `run_tag` on the first /24 from `suggested_octet` that no interface here
/// uses, with names that fit and are not taken.
fn free_layout(run_tag: &str, suggested_octet: u8, node_count: u64) -> anyhow::Result<Layout> {
    let layout = Layout::new(run_tag, suggested_octet, node_count);
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
        .map(|octet| Layout::new(run_tag, octet, node_count))
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
    let output = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("cannot run `ip {}`", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "`ip {}` failed: {}",
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
        let layout = Layout::new("a1b2c3", 42, 3);
        assert!(layout.names().all(|name| name.len() <= MAX_NAME_LEN));
        assert_eq!(layout.bridge_addr(), Ipv4Addr::new(10, 213, 42, 1));
        assert_eq!(layout.subnet(), "10.213.42.0/24");
        assert_eq!(layout.nodes[2].addr, Ipv4Addr::new(10, 213, 42, 13));
        assert_eq!(
            layout.node(2).expect("node 2 is in the layout").namespace,
            "chqa1b2c3-2"
        );
        assert!(layout.node(4).is_err());
    }
}
