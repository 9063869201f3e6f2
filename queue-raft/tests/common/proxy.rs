//! A loopback TCP proxy in front of one node, which a test can cut and heal: the address the
//! node's peers know it by, so that cutting it takes the node off the network for them.
//!
//! Cut, it closes every connection it carries and closes each new one as soon as it is accepted,
//! so a peer fails at once, as against a node that is down, and nothing sent before or during
//! the cut reaches the node later (a frozen node's own sockets would keep it). Healed, it
//! forwards new connections again. It runs until dropped.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct LinkProxy {
    addr: SocketAddr,
    /// `true` while cut; every connection task watches it.
    cut: watch::Sender<bool>,
    /// The accept loop; aborted on drop, which ends the connection tasks too (their receivers
    /// see the sender gone).
    accepting: JoinHandle<()>,
}

impl LinkProxy {
    /// A proxy on a free loopback port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> LinkProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a proxy port");
        let addr = listener.local_addr().expect("the proxy's address");
        let (cut, _) = watch::channel(false);
        let accepting = tokio::spawn(accept_loop(listener, target, cut.clone()));
        LinkProxy {
            addr,
            cut,
            accepting,
        }
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, cut: watch::Sender<bool>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        if *cut.borrow() {
            drop(inbound);
            continue;
        }
        tokio::spawn(forward(inbound, target, cut.subscribe()));
    }
}

/// Carries one connection both ways until either side closes it or the link is cut.
async fn forward(mut inbound: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        // Also when the proxy is dropped (the sender is gone).
        _ = cut.wait_for(|cut| *cut) => {}
    }
}
