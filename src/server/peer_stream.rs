//! A peer connection's byte stream (election and quorum ports): plain TCP or TLS
//! (`quorum_tls.rs`), with the bytes a handshake looked at and did not consume given back
//! first.
//!
//! Owns: the socket of one peer connection until it is split into a reader and a writer.
//! Must not: interpret any byte (the transport, quorum SASL and the codec do).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The reading half of a peer connection.
pub type PeerRead = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a peer connection.
pub type PeerWrite = Box<dyn AsyncWrite + Send + Unpin>;

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

/// One peer connection's stream.
pub struct PeerStream {
    io: Io,
    peer: SocketAddr,
    /// Bytes read ahead and given back ([`PeerStream::unread`]); read before the socket.
    pending: Vec<u8>,
}

impl PeerStream {
    pub fn plain(s: TcpStream, peer: SocketAddr) -> PeerStream {
        PeerStream {
            io: Io::Plain(s),
            peer,
            pending: Vec::new(),
        }
    }

    pub fn tls(s: tokio_rustls::TlsStream<TcpStream>, peer: SocketAddr) -> PeerStream {
        PeerStream {
            io: Io::Tls(Box::new(s)),
            peer,
            pending: Vec::new(),
        }
    }

    /// The address of the other side.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    /// Gives back bytes read ahead: the next reads return them first.
    pub fn unread(&mut self, mut bytes: Vec<u8>) {
        bytes.extend_from_slice(&self.pending);
        self.pending = bytes;
    }

    /// Reads up to `n` bytes for a look, stopping early once `keep_going` says the prefix
    /// read so far already decides; the bytes are given back. An empty result: the other
    /// side closed.
    pub async fn look(
        &mut self,
        n: usize,
        keep_going: impl Fn(&[u8]) -> bool,
    ) -> io::Result<Vec<u8>> {
        let mut head = Vec::with_capacity(n);
        while head.len() < n && keep_going(&head) {
            let mut chunk = vec![0u8; n - head.len()];
            let got = self.read(&mut chunk).await?;
            if got == 0 {
                break;
            }
            head.extend_from_slice(&chunk[..got]);
        }
        self.unread(head.clone());
        Ok(head)
    }

    pub fn set_nodelay(&self) {
        let tcp = match &self.io {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
        };
        let _ = tcp.set_nodelay(true);
    }

    /// A reader and a writer that can live in different tasks.
    pub fn into_split(self) -> (PeerRead, PeerWrite) {
        let pending = std::io::Cursor::new(self.pending);
        match self.io {
            Io::Plain(s) => {
                let (rd, wr) = s.into_split();
                (Box::new(pending.chain(rd)), Box::new(wr))
            }
            Io::Tls(s) => {
                let (rd, wr) = tokio::io::split(*s);
                (Box::new(pending.chain(rd)), Box::new(wr))
            }
        }
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if !me.pending.is_empty() {
            let n = me.pending.len().min(buf.remaining());
            buf.put_slice(&me.pending[..n]);
            me.pending.drain(..n);
            return Poll::Ready(Ok(()));
        }
        match &mut me.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, b),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, b),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
