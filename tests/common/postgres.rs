//! Throw-away PostgreSQL clusters for the tests: found under /usr/lib/postgresql (with pgvector
//! installed, `.ci/postgres-setup`), started with initdb and pg_ctl in a temporary folder on a
//! loopback port (as the `postgres` user when the tests run as root), stopped on drop.

#![allow(dead_code)] // each test crate uses part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The PostgreSQL server binaries, when PostgreSQL and pgvector are installed.
pub fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    let bin = versions.pop()?;
    let version = bin.parent()?.file_name()?.to_str()?.to_string();
    let vector = Path::new("/usr/share/postgresql")
        .join(version)
        .join("extension/vector.control");
    vector.exists().then_some(bin)
}

/// `None` (and SKIPPED said) without PostgreSQL; a failure under CI.
pub fn postgres() -> Option<PathBuf> {
    let bin = pg_bin();
    if bin.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL 15 with pgvector is not installed (run .ci/postgres-setup as root)"
        );
        eprintln!(
            "SKIPPED: the PostgreSQL store tests need PostgreSQL and pgvector (.ci/postgres-setup)"
        );
    }
    bin
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command of the PostgreSQL server's, as the `postgres` user when we are root (initdb and
/// the server refuse to run as root).
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A temporary folder and a `cluster` folder in it, both the server user's.
fn server_owned_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cluster");
    std::fs::create_dir(&dir).expect("cluster dir");
    if is_root() {
        let mut chown = Command::new("chown");
        chown.args(["-R", "postgres"]).arg(tmp.path());
        run(chown, "chown");
    }
    (tmp, dir)
}

/// A throw-away PostgreSQL cluster in a temporary folder on a loopback port; stopped on drop.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Server settings beyond the harness's own (`-c name=value ...`).
    settings: String,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    pub fn start(bin: &Path) -> Cluster {
        Cluster::start_with(bin, "")
    }

    /// A cluster whose server also gets `settings` (`-c shared_buffers=1GB ...`).
    pub fn start_with(bin: &Path, settings: &str) -> Cluster {
        let (tmp, dir) = server_owned_dir();
        let mut initdb = as_server_user(&bin.join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.join("data"));
        run(initdb, "initdb");
        let cluster = Cluster {
            bin: bin.to_path_buf(),
            dir,
            port: free_port(),
            settings: settings.to_string(),
            _tmp: tmp,
        };
        cluster.pg_ctl_start();
        cluster
    }

    /// A streaming replica of `primary` (pg_basebackup), started on its own port.
    pub fn replica_of(primary: &Cluster) -> Cluster {
        let (tmp, dir) = server_owned_dir();
        let mut backup = as_server_user(&primary.bin.join("pg_basebackup"));
        backup
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-R",
                "--checkpoint=fast",
                "-p",
            ])
            .arg(primary.port.to_string())
            .arg("-D")
            .arg(dir.join("data"));
        run(backup, "pg_basebackup");
        let replica = Cluster {
            bin: primary.bin.clone(),
            dir,
            port: free_port(),
            settings: primary.settings.clone(),
            _tmp: tmp,
        };
        replica.pg_ctl_start();
        replica
    }

    pub fn pg_ctl_start(&self) {
        let mut start = as_server_user(&self.bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {}",
                self.port,
                self.dir.display(),
                self.settings
            ))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "start"]);
        run(start, "pg_ctl start");
    }

    pub fn stop(&self, mode: &str) {
        let mut stop = as_server_user(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", mode, "-w", "stop"]);
        run(stop, "pg_ctl stop");
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(db), postgres::NoTls).expect("connect")
    }

    /// A new empty database; its URL.
    pub fn database(&self, name: &str) -> String {
        self.client("postgres")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        self.url(name)
    }

    pub fn count(&self, db: &str, sql: &str) -> i64 {
        self.client(db).query_one(sql, &[]).expect(sql).get(0)
    }

    /// Images stored, 0 before the store exists.
    pub fn stored(&self, db: &str) -> i64 {
        self.client(db)
            .query_one("SELECT count(*) FROM imgsearch_images", &[])
            .map_or(0, |r| r.get(0))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = as_server_user(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
    }
}
