//! `herald-gateway`: load the configuration, set up logging, listen, serve.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use herald_gateway::config::{Config, DevelopmentSecrets, LogFormat};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Herald real-time gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (default: the bundled deploy/herald.toml).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Print the configuration file's JSON Schema and exit.
    #[arg(long)]
    config_schema: bool,
    /// Ask the gateway this configuration describes for `/healthz` on its
    /// own `listen` port and exit 0 when it answers 200: a container health
    /// check for images without an HTTP client.
    #[arg(long)]
    healthcheck: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.config_schema {
        use std::io::Write;
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = writeln!(
            std::io::stdout().lock(),
            "{:#}",
            herald_gateway::config::schema()
        );
        return Ok(());
    }
    let mut config = Config::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    if args.healthcheck {
        return healthcheck(config.listen).await;
    }
    // The Redis client configuration reads the TLS files: a missing or
    // unusable one stops the start (and `--check`) naming its key.
    if config.redis.is_set()
        && let Err(e) = config.redis.target().client_config()
    {
        anyhow::bail!("invalid config key `redis.{}`: {}", e.key, e.reason);
    }
    if args.check {
        println!("configuration ok: {} profile(s)", config.profiles().len());
        return Ok(());
    }
    init_tracing(config.log.format);
    let listener = herald_gateway::server::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let api_listener = match config.api.listen.filter(|_| config.api.enabled) {
        Some(at) => Some(
            herald_gateway::server::bind(at)
                .with_context(|| format!("cannot listen on {at} (api.listen)"))?,
        ),
        None => None,
    };
    let api_addr = match &api_listener {
        Some(l) => l.local_addr()?,
        None => addr,
    };
    let signal = herald_gateway::shutdown::signal().context("cannot install signal handlers")?;
    if let Some(dev) = config.development_mode() {
        tracing::warn!("DEVELOPMENT MODE: credentials generated for this run only");
        println!(
            "{}",
            development_banner(&dev, addr, api_addr, &config.api.prefix)
        );
    }
    if config.api.console && config.api.operator_key.is_none() {
        anyhow::bail!(
            "api.console: the console signs in with the operator key; set HERALD_API_KEY"
        );
    }
    // One stable line on stdout, so supervisors and tests learn the bound port.
    if api_listener.is_some() {
        println!("herald-gateway server API on {api_addr}");
    }
    println!("herald-gateway listening on {addr}");
    tracing::info!(%addr, profiles = config.profiles().len(), "listening");
    herald_gateway::run(config, listener, api_listener, signal).await?;
    Ok(())
}

/// `GET /healthz` on the listen port (the loopback address when it listens
/// on every address), with a short deadline: a hung gateway is unhealthy.
async fn healthcheck(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let url = format!("http://{}/healthz", SocketAddr::new(ip, listen.port()));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()?;
    let status = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("unhealthy: no answer from {url}"))?
        .status();
    anyhow::ensure!(status.is_success(), "unhealthy: {url} answered {status}");
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init();
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .init();
    }
}

/// What a first run prints: the generated secrets and two commands to paste.
fn development_banner(
    dev: &DevelopmentSecrets,
    addr: std::net::SocketAddr,
    api_addr: std::net::SocketAddr,
    prefix: &str,
) -> String {
    let (admin, jwt, api) = (
        dev.admin_key.expose(),
        dev.jwt_secret.expose(),
        dev.api_key.expose(),
    );
    format!(
        "\
*** DEVELOPMENT MODE: embedded broker on a loopback address and no credentials configured.
*** Generated for this run only (set any secret, a Redis URL or a non-loopback address and nothing is generated):
HERALD_ADMIN_KEY={admin}
HERALD_JWT_SECRET={jwt}
HERALD_API_KEY={api}
Connect a client (docsfy's API, as the admin user):
  websocat 'ws://{addr}/api/ws?token={admin}'
Publish to it:
  curl -sS -H 'Authorization: Bearer {api}' -H 'Content-Type: application/json' \\
    -d '{{\"to\":[\"user:admin\"],\"type\":\"progress\",\"data\":{{\"step\":1}}}}' http://{api_addr}{prefix}/publish
  heraldctl --http http://{api_addr}{prefix} --api-key {api} publish --to user:admin --type progress --data '{{\"step\":1}}'"
    )
}
