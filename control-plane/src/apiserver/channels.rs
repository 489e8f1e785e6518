//! Kubernetes' WebSocket channel protocol (`v4.channel.k8s.io`, `v5.channel.k8s.io`), which
//! exec and the Python client's port-forward speak: every binary message starts with one byte
//! naming its channel. v5 adds a close signal, channel 255 carrying the id of the channel the
//! client has finished writing.

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::HeaderMap;

use super::status::Status;

/// The protocol kubectl ≥ 1.30 asks for first; it adds half-close of stdin.
pub const V5: &str = "v5.channel.k8s.io";
/// The protocol the Python client speaks.
pub const V4: &str = "v4.channel.k8s.io";
/// kubectl's port-forward: SPDY/3.1 carried inside the WebSocket's binary messages.
pub const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// The v5 signal that the client will send nothing more on a channel.
const CLOSE: u8 = 255;

/// The first of `supported` (in the server's order of preference) that the client offered in
/// `Sec-WebSocket-Protocol`.
pub fn choose(headers: &HeaderMap, supported: &[&'static str]) -> Option<&'static str> {
    let offered: Vec<&str> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    supported.iter().copied().find(|p| offered.contains(p))
}

/// The end of a session. Clients read a close without a status (1005) as an error.
pub fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    }))
}

/// The upgrade a streaming subresource needs and the protocol it will speak: the first of
/// `supported` the client offered. Without either the request is the client's error.
pub fn negotiate(
    headers: &HeaderMap,
    ws: Option<WebSocketUpgrade>,
    supported: &[&'static str],
) -> Result<(WebSocketUpgrade, &'static str), Status> {
    let ws = ws.ok_or_else(|| Status::bad_request("Upgrade request required".into()))?;
    let protocol = choose(headers, supported).ok_or_else(|| {
        Status::bad_request(format!(
            "unable to upgrade connection: none of the offered stream protocols is supported; use one of: {}",
            supported.join(", ")
        ))
    })?;
    Ok((ws.protocols([protocol]), protocol))
}

/// A message for the client on `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Message {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    Message::Binary(out)
}

/// What a client's message means.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// Bytes on a channel.
    Data(u8, Vec<u8>),
    /// (v5) The client has finished writing this channel.
    Closed(u8),
    /// The client closed the connection.
    End,
    /// Nothing to act on (pings, empty messages).
    Nothing,
}

/// Reads one message. The Python client sends text messages whose first character is the
/// channel, so text is read like binary.
pub fn parse(message: Message, v5: bool) -> Incoming {
    let data = match message {
        Message::Binary(b) => b,
        Message::Text(t) => t.into_bytes(),
        Message::Close(_) => return Incoming::End,
        Message::Ping(_) | Message::Pong(_) => return Incoming::Nothing,
    };
    match data.split_first() {
        None => Incoming::Nothing,
        Some((&CLOSE, rest)) if v5 => match rest.first() {
            Some(&channel) => Incoming::Closed(channel),
            None => Incoming::Nothing,
        },
        Some((&channel, rest)) => Incoming::Data(channel, rest.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_the_servers_order() {
        let mut h = HeaderMap::new();
        h.insert(
            "sec-websocket-protocol",
            "v4.channel.k8s.io, v5.channel.k8s.io".parse().unwrap(),
        );
        assert_eq!(choose(&h, &[V5, V4]), Some(V5));
        assert_eq!(choose(&h, &[SPDY_TUNNEL]), None);
        assert_eq!(choose(&HeaderMap::new(), &[V5]), None);
    }

    #[test]
    fn messages_parse_by_channel() {
        assert_eq!(
            parse(Message::Binary(vec![0, b'h', b'i']), true),
            Incoming::Data(0, b"hi".to_vec())
        );
        assert_eq!(
            parse(Message::Binary(vec![255, 0]), true),
            Incoming::Closed(0)
        );
        assert_eq!(
            parse(Message::Binary(vec![255, 0]), false),
            Incoming::Data(255, vec![0])
        );
        assert_eq!(
            parse(Message::Text("\u{4}{\"Width\":80}".into()), false),
            Incoming::Data(4, b"{\"Width\":80}".to_vec())
        );
        assert_eq!(parse(Message::Binary(vec![]), true), Incoming::Nothing);
        assert_eq!(parse(Message::Close(None), true), Incoming::End);
        assert_eq!(frame(2, b"x"), Message::Binary(vec![2, b'x']));
    }
}
