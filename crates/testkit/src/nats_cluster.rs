//! A JetStream cluster on loopback, as a region runs one (deploy/nats/values.yaml): three
//! `nats-server` processes joined by routes, every write fsynced (`sync_interval:
//! always`); whoever creates streams and buckets on it asks for three replicas. A node can
//! be killed, restarted, frozen (cut off: its sockets stay open and go silent) and thawed;
//! a stream's leader can be found and asked to step down; the whole cluster can be
//! killed and started again.

use std::time::Duration;

use async_nats::jetstream;
use tempfile::TempDir;

use crate::nats::{NatsServer, TestkitError, free_port};

/// How long a step-down may take to show a new leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The nodes of one cluster, `n0`, `n1`, … Dropping it kills them and removes their stores.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
    _dir: TempDir,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until each answers JetStream (a meta leader is
    /// elected).
    pub async fn start(size: usize) -> Result<Self, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix("helpline-nats-cluster-")
            .tempdir()?;
        let route_ports = (0..size)
            .map(|_| free_port())
            .collect::<Result<Vec<u16>, _>>()?;
        let routes = route_ports
            .iter()
            .map(|port| format!("nats-route://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::with_capacity(size);
        for (i, route_port) in route_ports.iter().enumerate() {
            let config = dir.path().join(format!("n{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "cluster {{\n  name: helpline\n  listen: 127.0.0.1:{route_port}\n  routes: [{routes}]\n}}\n"
                ),
            )?;
            nodes.push(
                NatsServer::builder()
                    .server_name(format!("n{i}"))
                    .config_file(config)
                    .sync_always()
                    .store_dir(dir.path().join(format!("n{i}")))
                    .log_file(dir.path().join(format!("n{i}.log")))
                    .start_unready()?,
            );
        }
        for node in &mut nodes {
            node.wait_ready().await?;
        }
        Ok(Self { nodes, _dir: dir })
    }

    /// Every node's URL, comma-separated, as clients (and `nats.url`) take them.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client that knows every node. It pings every 2 s, as helpline's do, so that a
    /// frozen node is left within seconds rather than minutes.
    pub async fn connect(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        let urls: Vec<String> = self.nodes.iter().map(NatsServer::url).collect();
        async_nats::ConnectOptions::new()
            .ping_interval(Duration::from_secs(2))
            .connect(urls)
            .await
    }

    /// A client of node `i` alone: to ask the cluster while another node is cut off.
    pub async fn connect_to(
        &self,
        i: usize,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        async_nats::connect(self.nodes[i].url()).await
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`, to kill, restart, pause or resume.
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// Which node leads `stream` now.
    pub async fn leader_of(
        &self,
        js: &jetstream::Context,
        stream: &str,
    ) -> Result<usize, TestkitError> {
        let mut stream = js
            .get_stream(stream)
            .await
            .map_err(|e| TestkitError::JetStream(e.to_string()))?;
        let info = stream
            .info()
            .await
            .map_err(|e| TestkitError::JetStream(e.to_string()))?;
        let leader = info
            .cluster
            .as_ref()
            .and_then(|cluster| cluster.leader.clone())
            .ok_or_else(|| {
                TestkitError::JetStream(format!("{} has no leader now", info.config.name))
            })?;
        leader
            .strip_prefix('n')
            .and_then(|i| i.parse().ok())
            .filter(|i| *i < self.nodes.len())
            .ok_or_else(|| {
                TestkitError::JetStream(format!("leader {leader} is no node of this cluster"))
            })
    }

    /// Asks `stream`'s leader to step down and waits until another node leads it.
    /// Returns the old and the new leader.
    pub async fn step_down(
        &self,
        js: &jetstream::Context,
        stream: &str,
    ) -> Result<(usize, usize), TestkitError> {
        let old = self.leader_of(js, stream).await?;
        let answer: serde_json::Value = js
            .request(format!("STREAM.LEADER.STEPDOWN.{stream}"), &())
            .await
            .map_err(|e| TestkitError::JetStream(e.to_string()))?;
        if let Some(error) = answer.get("error") {
            return Err(TestkitError::JetStream(format!(
                "step-down refused: {error}"
            )));
        }
        let deadline = tokio::time::Instant::now() + LEADER_TIMEOUT;
        loop {
            match self.leader_of(js, stream).await {
                Ok(new) if new != old => return Ok((old, new)),
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(TestkitError::JetStream(format!(
                        "{stream}: no new leader {LEADER_TIMEOUT:?} after the step-down"
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Kills every node at once (SIGKILL, as a power cut), starts them all again on their
    /// stores and waits until each answers JetStream.
    pub async fn restart_all(&mut self) -> Result<(), TestkitError> {
        for node in &mut self.nodes {
            node.kill().await?;
        }
        for node in &mut self.nodes {
            node.restart_unready().await?;
        }
        for node in &mut self.nodes {
            node.wait_ready().await?;
        }
        Ok(())
    }
}
