//! `bowman-bench`: benchmark tools. `bowman-bench gen-events --rows N --seed S [--out FILE]`
//! writes seed-like events as JSON lines (stdout when no file is given), with progress on stderr.

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bowman-bench", about = "Bowman benchmark tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write deterministic events as JSON lines.
    GenEvents {
        /// Number of events, duplicates included.
        #[arg(long)]
        rows: u64,
        /// Seed: the same seed always gives the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file (stdout when omitted).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::GenEvents { rows, seed, out } => {
            let sink: Box<dyn Write> = match &out {
                Some(path) => Box::new(std::fs::File::create(path).unwrap_or_else(|e| {
                    eprintln!("bowman-bench: cannot create {}: {e}", path.display());
                    std::process::exit(1);
                })),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut w = BufWriter::with_capacity(1 << 20, sink);
            let started = Instant::now();
            let mut last_report = Instant::now();
            for (i, line) in bowman_bench::EventGenerator::new(rows, seed).enumerate() {
                if let Err(e) = w.write_all(line.as_bytes()).and_then(|_| w.write_all(b"\n")) {
                    eprintln!("bowman-bench: write failed: {e}");
                    std::process::exit(1);
                }
                if last_report.elapsed() > Duration::from_secs(2) {
                    eprint!("\rgenerated {} / {rows} events ({:.0}%)", i + 1, (i + 1) as f64 * 100.0 / rows as f64);
                    last_report = Instant::now();
                }
            }
            if let Err(e) = w.flush() {
                eprintln!("bowman-bench: write failed: {e}");
                std::process::exit(1);
            }
            eprintln!("\rgenerated {rows} events in {:.1}s", started.elapsed().as_secs_f64());
        }
    }
}
