//! The Engine API client's transport for `ssh://` endpoints: HTTP over `docker system dial-stdio`,
//! so the API client reaches a host exactly as the docker CLI does (same ssh client, config and keys).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard::{BollardRequest, Docker};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::docker::Engine;

/// The host name requests carry; the stream already leads to the engine (as the docker CLI does).
const DUMMY_HOST: &str = "http://api.moby.localhost";

/// An Engine API client whose connections are `docker system dial-stdio` processes against `engine`.
pub fn connect(engine: &Engine, timeout_secs: u64) -> Result<Docker, bollard::errors::Error> {
    let client = Arc::new(Client::builder(TokioExecutor::new()).build(Dialer(Arc::new(engine.clone()))));
    Docker::connect_with_custom_transport(
        move |req: BollardRequest| {
            let client = client.clone();
            async move { Ok(client.request(req).await?) }
        },
        Some(DUMMY_HOST),
        timeout_secs,
        bollard::API_DEFAULT_VERSION,
    )
}

/// Opens connections; hyper pools and reuses them.
#[derive(Clone)]
struct Dialer(Arc<Engine>);

impl tower_service::Service<hyper::Uri> for Dialer {
    type Response = TokioIo<Stdio>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Stdio>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let mut cmd = tokio::process::Command::from(self.0.dial_stdio());
        Box::pin(async move {
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            let mut child = cmd.spawn()?;
            let (Some(write), Some(read)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(io::Error::other("docker system dial-stdio has no pipes"));
            };
            Ok(TokioIo::new(Stdio { _child: child, read, write }))
        })
    }
}

/// One connection: the process's stdout is read, its stdin written; dropping it ends the process.
struct Stdio {
    _child: Child,
    read: ChildStdout,
    write: ChildStdin,
}

impl AsyncRead for Stdio {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stdio {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().write).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().write).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().write).poll_shutdown(cx)
    }
}

impl Connection for Stdio {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}
