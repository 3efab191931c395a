//! The project's own test workload (like upstream's agnhost): one static binary whose first
//! argument (or the name it is called by, through a symlink) picks what it does.

mod client;
mod serve;
mod sys;

use std::time::Duration;

const USAGE: &str = "usage: keelson-workload MODE [ARGS]
modes:
  serve [--port N]... [--message TEXT] [--strict-paths]
                                         HTTP server (default port 8080, or $PORT)
  exit CODE [--after SECONDS]            exit with CODE
  alloc --mib N [--hold]                 allocate and touch N MiB
  burn [--threads N]                     burn CPU
  pause                                  sleep until SIGTERM/SIGINT
  sleep SECONDS                          sleep, then exit 0
  curl [-sSfL] [-o FILE] [-w FMT] [-m S] [-H H] URL
                                         HTTP GET, print the body
  echo ARGS                              print ARGS
  env                                    print the environment
  hostname                               print the hostname
  mysqladmin ping                        answer like mysqladmin (always alive)";

/// What the program was asked to do.
#[derive(Debug, PartialEq)]
enum Command {
    Serve(serve::Config),
    Exit { code: i32, after: Option<f64> },
    Alloc { mib: u64, hold: bool },
    Burn { threads: usize },
    Pause,
    Sleep { seconds: f64 },
    Curl(client::Request),
    Echo(Vec<String>),
    Env,
    Hostname,
    MysqlAdmin(Vec<String>),
    Help,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let env_port = std::env::var("PORT").ok();
    match parse(&args, env_port.as_deref()) {
        Ok(cmd) => std::process::exit(run(cmd)),
        Err(msg) => {
            eprintln!("keelson-workload: {msg}");
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

/// Parses the whole command line: the mode is argv[0]'s basename when that names a mode
/// (`curl`, `hostname`, ...), else the first argument.
fn parse(args: &[String], env_port: Option<&str>) -> Result<Command, String> {
    let argv0 = args.first().map(String::as_str).unwrap_or("");
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    if is_mode(base) && base != "keelson-workload" {
        return parse_mode(base, &args[1..], env_port);
    }
    match args.get(1) {
        None => Ok(Command::Help),
        Some(mode) => parse_mode(mode, &args[2..], env_port),
    }
}

fn is_mode(name: &str) -> bool {
    matches!(
        name,
        "serve"
            | "exit"
            | "alloc"
            | "burn"
            | "pause"
            | "sleep"
            | "curl"
            | "echo"
            | "env"
            | "hostname"
            | "mysqladmin"
    )
}

fn parse_mode(mode: &str, rest: &[String], env_port: Option<&str>) -> Result<Command, String> {
    match mode {
        "serve" => serve::Config::parse(rest, env_port).map(Command::Serve),
        "exit" => {
            let mut code = None;
            let mut after = None;
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--after" => after = Some(number(it.next(), "--after")?),
                    other => {
                        code = Some(
                            other
                                .parse::<i32>()
                                .map_err(|_| format!("exit: bad code {other:?}"))?,
                        )
                    }
                }
            }
            Ok(Command::Exit {
                code: code.unwrap_or(0),
                after,
            })
        }
        "alloc" => {
            let mut mib = None;
            let mut hold = false;
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--mib" => mib = Some(number(it.next(), "--mib")? as u64),
                    "--hold" => hold = true,
                    other => return Err(format!("alloc: unknown argument {other:?}")),
                }
            }
            Ok(Command::Alloc {
                mib: mib.ok_or("alloc: --mib N is required")?,
                hold,
            })
        }
        "burn" => {
            let mut threads = 1;
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--threads" => threads = number(it.next(), "--threads")?.max(1.0) as usize,
                    other => return Err(format!("burn: unknown argument {other:?}")),
                }
            }
            Ok(Command::Burn { threads })
        }
        "pause" => Ok(Command::Pause),
        "sleep" => match rest.first() {
            Some(s) => Ok(Command::Sleep {
                seconds: number(Some(s), "sleep")?,
            }),
            None => Err("sleep: SECONDS is required".into()),
        },
        "curl" => client::Request::parse(rest).map(Command::Curl),
        "echo" => Ok(Command::Echo(rest.to_vec())),
        "env" => Ok(Command::Env),
        "hostname" => Ok(Command::Hostname),
        "mysqladmin" => Ok(Command::MysqlAdmin(rest.to_vec())),
        "help" | "-h" | "--help" => Ok(Command::Help),
        other => Err(format!("unknown mode {other:?}")),
    }
}

fn number(v: Option<&String>, what: &str) -> Result<f64, String> {
    let v = v.ok_or_else(|| format!("{what} needs a value"))?;
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(format!("{what}: bad number {v:?}")),
    }
}

/// Runs a command; the result is the process exit code.
fn run(cmd: Command) -> i32 {
    match cmd {
        Command::Help => {
            println!("{USAGE}");
            0
        }
        Command::Serve(cfg) => {
            sys::exit_on_term_signals();
            serve::run(&cfg)
        }
        Command::Exit { code, after } => {
            if let Some(s) = after {
                sys::exit_on_term_signals();
                std::thread::sleep(Duration::from_secs_f64(s));
            }
            code
        }
        Command::Alloc { mib, hold } => {
            sys::exit_on_term_signals();
            let mut chunks: Vec<Vec<u8>> = Vec::new();
            for _ in 0..mib {
                // Writing one byte per page makes the kernel back every page.
                let mut chunk = vec![0u8; 1 << 20];
                for i in (0..chunk.len()).step_by(4096) {
                    chunk[i] = 1;
                }
                chunks.push(std::hint::black_box(chunk));
            }
            println!("allocated {mib} MiB");
            if hold {
                sys::sleep_forever();
            }
            0
        }
        Command::Burn { threads } => {
            sys::exit_on_term_signals();
            println!("burning {threads} thread(s)");
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    std::thread::spawn(|| {
                        let mut x: u64 = 1;
                        loop {
                            x = std::hint::black_box(
                                x.wrapping_mul(6364136223846793005).wrapping_add(1),
                            );
                        }
                    })
                })
                .collect();
            for h in handles {
                let _ = h.join();
            }
            0
        }
        Command::Pause => {
            sys::exit_on_term_signals();
            sys::sleep_forever()
        }
        Command::Sleep { seconds } => {
            sys::exit_on_term_signals();
            std::thread::sleep(Duration::from_secs_f64(seconds));
            0
        }
        Command::Curl(req) => client::run(&req),
        Command::Echo(args) => {
            println!("{}", args.join(" "));
            0
        }
        Command::Env => {
            for (k, v) in std::env::vars_os() {
                println!("{}={}", k.to_string_lossy(), v.to_string_lossy());
            }
            0
        }
        Command::Hostname => {
            println!("{}", sys::hostname());
            0
        }
        Command::MysqlAdmin(args) => {
            if args.iter().any(|a| a == "ping") {
                println!("mysqld is alive");
                0
            } else {
                eprintln!("mysqladmin: only `ping` is supported");
                1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn check(line: &str, env_port: Option<&str>, want: Result<Command, &str>) {
        let got = parse(&argv(line), env_port);
        match (&got, &want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{line}"),
            (Err(g), Err(w)) => assert!(g.contains(w), "{line}: error {g:?} lacks {w:?}"),
            _ => panic!("{line}: got {got:?}, want {want:?}"),
        }
    }

    fn serve(ports: &[u16], message: &str) -> Command {
        Command::Serve(serve::Config {
            ports: ports.to_vec(),
            message: message.into(),
            strict_paths: false,
        })
    }

    #[test]
    fn parses_modes() {
        check("kw", None, Ok(Command::Help));
        check("kw serve", None, Ok(serve(&[8080], "HELLO World!")));
        check("kw serve", Some("9000"), Ok(serve(&[9000], "HELLO World!")));
        check(
            "kw serve --port 80 --port 81",
            Some("9000"),
            Ok(serve(&[80, 81], "HELLO World!")),
        );
        check(
            "kw serve --port=8000 --message hi",
            None,
            Ok(serve(&[8000], "hi")),
        );
        check(
            "kw serve --port 8080 Howdy",
            None,
            Ok(serve(&[8080], "Howdy")),
        );
        check("kw serve --port x", None, Err("bad port"));
        check(
            "kw serve --strict-paths --port 80",
            None,
            Ok(Command::Serve(serve::Config {
                ports: vec![80],
                message: "HELLO World!".into(),
                strict_paths: true,
            })),
        );
        check(
            "kw exit 3",
            None,
            Ok(Command::Exit {
                code: 3,
                after: None,
            }),
        );
        check(
            "kw exit 1 --after 2.5",
            None,
            Ok(Command::Exit {
                code: 1,
                after: Some(2.5),
            }),
        );
        check("kw exit x", None, Err("bad code"));
        check(
            "kw alloc --mib 64 --hold",
            None,
            Ok(Command::Alloc {
                mib: 64,
                hold: true,
            }),
        );
        check("kw alloc", None, Err("--mib N is required"));
        check(
            "kw burn --threads 2",
            None,
            Ok(Command::Burn { threads: 2 }),
        );
        check("kw burn", None, Ok(Command::Burn { threads: 1 }));
        check("kw pause", None, Ok(Command::Pause));
        check("kw sleep 5", None, Ok(Command::Sleep { seconds: 5.0 }));
        check("kw sleep -1", None, Err("bad number"));
        check(
            "kw echo init done",
            None,
            Ok(Command::Echo(argv("init done"))),
        );
        check("kw env", None, Ok(Command::Env));
        check("kw hostname", None, Ok(Command::Hostname));
        check("kw frobnicate", None, Err("unknown mode"));
        check(
            "/usr/bin/mysqladmin ping -pX",
            None,
            Ok(Command::MysqlAdmin(argv("ping -pX"))),
        );
        check("/bin/hostname", None, Ok(Command::Hostname));
        check(
            "/bin/keelson-workload hostname",
            None,
            Ok(Command::Hostname),
        );
        check(
            "/bin/curl -s http://localhost:8080/x",
            None,
            Ok(Command::Curl(client::Request {
                url: "http://localhost:8080/x".into(),
                silent: true,
                ..Default::default()
            })),
        );
    }
}
