//! `moto_server` (from PyPI): AWS's APIs on loopback, one per test process.
//! ECR's `GetAuthorizationToken` for the `aws` provider's tests, and an S3
//! endpoint for the cache's object storage.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

/// `http://127.0.0.1:PORT` of one `moto_server` per test process.
pub fn moto_url() -> &'static str {
    static MOTO: OnceLock<String> = OnceLock::new();
    MOTO.get_or_init(start_moto)
}

enum Moto {
    Started,
    Exited(std::io::Result<std::process::ExitStatus>),
}

fn start_moto() -> String {
    for _attempt in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        // moto's output, readable by us after the file's name is gone.
        let path = std::env::temp_dir().join(format!("mcreg-moto-{}-{port}.log", std::process::id()));
        let log = std::fs::File::create(&path).expect("moto log");
        let mut output = std::fs::File::open(&path).expect("moto log");
        std::fs::remove_file(&path).expect("unlink moto log");
        let mut read_output = move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut output, &mut text);
            text
        };
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // Die with the test process.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // PR_SET_PDEATHSIG fires when the forking *thread* exits: this one lives
        // as long as moto does.
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("moto-server".into())
            .spawn(move || match cmd.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(Moto::Started));
                    let _ = tx.send(Ok(Moto::Exited(child.wait())));
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })
            .expect("spawn moto thread");
        match rx.recv().expect("moto thread answered") {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!(
                    "moto_server not found: run scripts/install-test-tools.sh (pip install 'moto[server]')"
                )
            }
            Err(e) => panic!("cannot start moto_server: {e}"),
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Ok(Moto::Exited(status))) = rx.try_recv() {
                let output = read_output();
                if output.contains("in use") {
                    break; // someone took the port: try another
                }
                panic!("moto_server exited ({status:?}):\n{output}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return format!("http://127.0.0.1:{port}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on port {port} within 30 s:\n{}",
                read_output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("moto_server found no free port in 5 attempts")
}
