//! `bowman`: load configuration, start the server, wait for SIGTERM or Ctrl-C, drain, exit 0.

use clap::Parser;

use bowman_server::{Cli, Command, Config, Server};

fn init_logging(format: &str) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("BOWMAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // tokio-postgres logs each statement's text at debug, and a Redshift UNLOAD carries S3
    // credentials in its text; Bowman logs the remote statements it sends itself, without them.
    // Its modules are named too, so that no BOWMAN_LOG (`tokio_postgres::query=debug`) turns it on.
    for target in ["tokio_postgres", "tokio_postgres::prepare", "tokio_postgres::query", "tokio_postgres::simple_query", "tokio_postgres::copy_in", "tokio_postgres::copy_out"] {
        filter = filter.add_directive(format!("{target}=info").parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}

fn main() {
    // Start-up and signals only: statements run on the server's own worker threads
    // (bowman_server::WORKER_STACK_BYTES), accepts and cancels on its control thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("bowman-main")
        .build()
        .unwrap_or_else(|e| {
            eprintln!("bowman: cannot start the runtime: {e}");
            std::process::exit(1);
        });
    runtime.block_on(run());
    // Whatever is left (an aborted statement that has not reached a yield point, blocking
    // I/O) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
}

async fn run() {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::HashPassword) => {
            let mut password = String::new();
            if std::io::stdin().read_line(&mut password).is_err() || password.trim_end_matches(['\r', '\n']).is_empty() {
                eprintln!("bowman: give the password on standard input");
                std::process::exit(2);
            }
            let secret = bowman_server::auth::ScramSecret::from_password(password.trim_end_matches(['\r', '\n']));
            println!("{}", secret.to_hash_string());
            return;
        }
        None => cli.serve,
    };
    let config = match Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bowman: {e}");
            std::process::exit(2);
        }
    };
    init_logging(&config.log_format);
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bowman: {e}");
            std::process::exit(1);
        }
    };
    println!("pgwire listening on {}", server.pg_addr);
    println!("flight listening on {}", server.flight_addr);
    println!("http listening on {}", server.http_addr);

    server.terminated().await;
    tracing::info!("shutting down: draining connections");
    server.shutdown().await;
    tracing::info!("bye");
}
