//! LSP base-protocol framing (`Content-Length` headers) as a tokio-util codec.
//!
//! Header lines end in CRLF and the header part ends with an empty line. The
//! `Content-Length` name is matched case-insensitively and counts bytes of the
//! UTF-8 body, never characters. `Content-Type` and unknown headers are
//! tolerated and ignored.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Maximum size of the header part of one message. Real clients send one or
/// two short lines, so anything larger is treated as broken input.
pub const MAX_HEADER_SIZE: usize = 8 * 1024;

/// Errors from reading or writing framed LSP messages.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid LSP header line {line:?}: expected `Name: value`")]
    InvalidHeader { line: String },
    #[error("invalid Content-Length {value:?}: expected a non-negative integer")]
    InvalidContentLength { value: String },
    #[error("missing Content-Length header")]
    MissingContentLength,
    #[error("LSP header part longer than {MAX_HEADER_SIZE} bytes without an empty line")]
    HeaderTooLong,
    #[error("LSP message of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge { size: usize, max: usize },
    #[error("stream ended in the middle of an LSP message ({buffered} bytes buffered)")]
    TruncatedMessage { buffered: usize },
}

/// Codec for `Content-Length`-framed JSON-RPC messages. Items are the raw
/// JSON bodies.
#[derive(Debug, Clone)]
pub struct LspCodec {
    max_message_size: usize,
    /// Body length of the message being read, once its headers are consumed.
    pending_body: Option<usize>,
}

impl LspCodec {
    pub fn new(max_message_size: usize) -> Self {
        Self {
            max_message_size,
            pending_body: None,
        }
    }

    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }
}

impl Default for LspCodec {
    fn default() -> Self {
        Self::new(crate::DEFAULT_MAX_MESSAGE_SIZE)
    }
}

/// Parses the header part (without the final empty line) and returns the
/// body length it announces.
fn parse_headers(headers: &[u8]) -> Result<usize, CodecError> {
    let mut content_length = None;
    for raw_line in headers.split(|&b| b == b'\n') {
        let line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        if line.is_empty() {
            continue;
        }

        let text = String::from_utf8_lossy(line);
        let Some((name, value)) = text.split_once(':') else {
            return Err(CodecError::InvalidHeader {
                line: text.into_owned(),
            });
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            let value = value.trim();
            let parsed = value
                .parse::<usize>()
                .map_err(|_| CodecError::InvalidContentLength {
                    value: value.to_owned(),
                })?;
            content_length = Some(parsed);
        }
    }
    content_length.ok_or(CodecError::MissingContentLength)
}

impl Decoder for LspCodec {
    type Item = Bytes;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        let body_len = match self.pending_body {
            Some(len) => len,
            None => {
                let Some(end) = memchr::memmem::find(src, b"\r\n\r\n") else {
                    if src.len() > MAX_HEADER_SIZE {
                        return Err(CodecError::HeaderTooLong);
                    }
                    return Ok(None);
                };
                if end > MAX_HEADER_SIZE {
                    return Err(CodecError::HeaderTooLong);
                }

                let len = parse_headers(&src[..end])?;
                if len > self.max_message_size {
                    return Err(CodecError::MessageTooLarge {
                        size: len,
                        max: self.max_message_size,
                    });
                }
                src.advance(end + 4);
                self.pending_body = Some(len);
                len
            }
        };

        if src.len() < body_len {
            src.reserve(body_len - src.len());
            return Ok(None);
        }
        self.pending_body = None;
        Ok(Some(src.split_to(body_len).freeze()))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.pending_body.is_none() => Ok(None),
            None => Err(CodecError::TruncatedMessage {
                buffered: src.len(),
            }),
        }
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for LspCodec {
    type Error = CodecError;

    fn encode(&mut self, body: T, dst: &mut BytesMut) -> Result<(), CodecError> {
        let body = body.as_ref();
        let header = format!("Content-Length: {}\r\n\r\n", body.len());
        dst.reserve(header.len() + body.len());
        dst.put_slice(header.as_bytes());
        dst.put_slice(body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut LspCodec, input: &[u8]) -> Result<Vec<Bytes>, CodecError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(frame) = codec.decode(&mut buf)? {
            out.push(frame);
        }
        if let Some(frame) = codec.decode_eof(&mut buf)? {
            out.push(frame);
        }
        Ok(out)
    }

    #[test]
    fn decodes_header_variants() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"Content-Length: 2\r\n\r\n{}", &[b"{}"]),
            (b"content-length: 2\r\n\r\n{}", &[b"{}"]),
            (b"CONTENT-LENGTH:2\r\n\r\n{}", &[b"{}"]),
            (
                b"Content-Length: 2\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{}",
                &[b"{}"],
            ),
            (b"Content-Type: x\r\nContent-Length: 2\r\nX-Other: y\r\n\r\n{}", &[b"{}"]),
            (b"Content-Length: 2\r\n\r\n{}Content-Length: 4\r\n\r\n[1 ]", &[b"{}", b"[1 ]"]),
            (b"", &[]),
        ];
        for (input, expected) in cases {
            let frames = decode_all(&mut LspCodec::default(), input).unwrap();
            let frames: Vec<&[u8]> = frames.iter().map(|f| f.as_ref()).collect();
            assert_eq!(
                &frames,
                expected,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn length_counts_bytes_not_chars() {
        let body = "{\"t\":\"漢字🎉\"}";
        let input = format!("Content-Length: {}\r\n\r\n{}", body.len(), body);
        let frames = decode_all(&mut LspCodec::default(), input.as_bytes()).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].as_ref(), body.as_bytes());
    }

    #[test]
    fn decodes_byte_by_byte() {
        let input = b"Content-Length: 7\r\n\r\n{\"a\":1}Content-Length: 2\r\n\r\n{}";
        let mut codec = LspCodec::default();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for &b in input.iter() {
            buf.put_u8(b);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            vec![Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"{}")]
        );
    }

    #[test]
    fn rejects_broken_input() {
        let too_big = format!("Content-Length: {}\r\n\r\n", 11);
        let long_header = vec![b'a'; MAX_HEADER_SIZE + 1];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"Content-Type: x\r\n\r\n{}".to_vec(),
                "missing Content-Length",
            ),
            (
                b"Content-Length: -1\r\n\r\n{}".to_vec(),
                "invalid Content-Length",
            ),
            (
                b"Content-Length: 2x\r\n\r\n{}".to_vec(),
                "invalid Content-Length",
            ),
            (
                b"garbage line\r\n\r\n{}".to_vec(),
                "invalid LSP header line",
            ),
            (too_big.into_bytes(), "exceeds the maximum of 10 bytes"),
            (long_header, "header part longer"),
            (
                b"Content-Length: 5\r\n\r\n{}".to_vec(),
                "stream ended in the middle",
            ),
        ];
        for (input, expected) in cases {
            let err = decode_all(&mut LspCodec::new(10), &input).unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "input {:?}: got {err}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn encodes_byte_length() {
        let mut buf = BytesMut::new();
        LspCodec::default()
            .encode("{\"t\":\"é\"}", &mut buf)
            .unwrap();
        assert_eq!(
            &buf[..],
            "Content-Length: 10\r\n\r\n{\"t\":\"é\"}".as_bytes()
        );
    }
}
