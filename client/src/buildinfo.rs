//! Go build information embedded in the binary, so `go version -m remote-gopls` succeeds.
//!
//! # Why
//!
//! On every activation vscode-go (golang/vscode-go master 28e27ffd,
//! `extension/src/goInstallTools.ts`) runs `go version -m <gopls path>` in
//! `inspectGoToolVersion`, called from `suggestUpdates` through `listOutdatedTools`. With
//! `go.alternateTools` that path is this binary. The tool is reported as outdated, with the
//! warning "Tools (gopls) need recompiling to work with go1.N" or, under
//! `go.toolsManagement.autoUpdate`, a silent `go install` of real gopls, when:
//!
//! * `go version -m` fails, or its first line has no `go<digits>.<digits>` token, or
//! * the user's `go version` has a greater major.minor than that token (the patch number is
//!   ignored), or
//! * the token contains `beta` or `rc` and the user's `go version` output does not contain it.
//!
//! vscode-go also takes the module version from field 3 of the third output line (the
//! `mod` line) but uses it only for display and for the Delve update check.
//!
//! # Which Go version
//!
//! No Go toolchain builds this binary, so no embedded Go version is exactly true.
//! `build.rs` embeds the `go env GOVERSION` of the build machine (or `REMOTE_GOPLS_GOVERSION`,
//! else go1.26.0, the minimum Go of gopls v0.23.0). That is the Go the client was built
//! next to, and on a developer machine it equals the user's Go, which passes the check.
//! When the user later installs a newer Go minor release, the recompile warning appears
//! until the client is rebuilt. A made-up future version would hide the warning, but it
//! would report a Go release that does not exist.
//!
//! # Format
//!
//! The blob follows what Go's `debug/buildinfo` reader accepts (Go 1.18 and later): a
//! 16-byte aligned, 32-byte header (14-byte magic, pointer size, flags with the
//! inline-strings bit), then the Go version and the module information as uvarint
//! length-prefixed strings. The module information is framed by 16 bytes on each side and
//! its last byte before the closing frame is `\n`; `go version -m` strips the frames.

use crate::version::{
    CLIENT_MODULE_PATH, CLIENT_PATH, CLIENT_VERSION, CLIENT_VERSION_SETTING,
    DEVELOPER_VERSION_SUFFIX, GOPLS_MODULE_PATH, PINNED_GOPLS_SETTING, PINNED_GOPLS_VERSION,
};

/// Go version embedded in the blob and reported as `GoVersion`; chosen by `build.rs`.
pub const GO_VERSION: &str = env!("REMOTE_GOPLS_EMBEDDED_GOVERSION");

/// Go's name for the target operating system (`GOOS`), mapped by `build.rs`.
pub const GOOS: &str = env!("REMOTE_GOPLS_GOOS");

/// Go's name for the target architecture (`GOARCH`), mapped by `build.rs`.
pub const GOARCH: &str = env!("REMOTE_GOPLS_GOARCH");

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER_LEN: usize = 32;
const FLAG_BIG_ENDIAN: u8 = 0x1;
const FLAG_INLINE_STRINGS: u8 = 0x2;

/// Frames around the module information. Go's reader only strips 16 bytes on each side,
/// so their content is free; these spell out where the text comes from.
const MODINFO_START: &[u8; 16] = b"remote-gopls:mi>";
const MODINFO_END: &[u8; 16] = b"<mi:remote-gopls";

/// Module information text, in pieces because `const` code cannot concatenate `&str`
/// constants. `version::render_modinfo` formats the same text at run time, and a test
/// checks that both agree.
const MODINFO_PIECES: &[&str] = &[
    "path\t",
    CLIENT_PATH,
    "\n",
    "mod\t",
    GOPLS_MODULE_PATH,
    "\t",
    PINNED_GOPLS_VERSION,
    DEVELOPER_VERSION_SUFFIX,
    "\t\n",
    "dep\t",
    CLIENT_MODULE_PATH,
    "\t",
    CLIENT_VERSION,
    "\t\n",
    "build\tGOOS=",
    GOOS,
    "\n",
    "build\tGOARCH=",
    GOARCH,
    "\n",
    "build\t",
    CLIENT_VERSION_SETTING,
    "=",
    env!("CARGO_PKG_VERSION"),
    "\n",
    "build\t",
    PINNED_GOPLS_SETTING,
    "=",
    PINNED_GOPLS_VERSION,
    "\n",
];

const MODINFO_LEN: usize = MODINFO_START.len() + pieces_len(MODINFO_PIECES) + MODINFO_END.len();

const BLOB_LEN: usize = HEADER_LEN
    + uvarint_len(GO_VERSION.len())
    + GO_VERSION.len()
    + uvarint_len(MODINFO_LEN)
    + MODINFO_LEN;

/// Build-info blob with the alignment that Go's reader requires of the magic.
#[repr(C, align(16))]
pub struct GoBuildInfo(pub [u8; BLOB_LEN]);

/// The blob, in the section where `go version -m` looks first: `.go.buildinfo` on ELF and
/// `__go_buildinfo` on Mach-O. Elsewhere it is only in read-only data, where Go does not look.
///
/// NOTE: only the ELF section has been checked with `go version -m`; the Mach-O section is
/// untested. Windows is not covered: Go's reader scans the first writable data section
/// there, and this static is read-only.
#[cfg_attr(
    all(not(target_vendor = "apple"), not(windows)),
    link_section = ".go.buildinfo"
)]
#[cfg_attr(target_vendor = "apple", link_section = "__DATA,__go_buildinfo")]
#[used]
pub static GO_BUILD_INFO: GoBuildInfo = GoBuildInfo(encode_blob());

/// Keeps [`GO_BUILD_INFO`] in the linked binary; call it once from `main`.
///
/// `#[used]` keeps the section through `--gc-sections` only if the object file holding it
/// is linked at all. The static lives in this library's rlib, and a linker skips archive
/// members that nothing references, so the binary references the static explicitly.
pub fn keep_linked() {
    std::hint::black_box(&GO_BUILD_INFO);
}

const fn pieces_len(pieces: &[&str]) -> usize {
    let mut total = 0;
    let mut index = 0;
    while index < pieces.len() {
        total += pieces[index].len();
        index += 1;
    }
    total
}

/// Returns the number of bytes Go's `binary.PutUvarint` writes for `value`.
const fn uvarint_len(mut value: usize) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

/// Copies `bytes` into `blob` at `offset` and returns the offset after them.
const fn put_bytes(blob: &mut [u8], mut offset: usize, bytes: &[u8]) -> usize {
    let mut index = 0;
    while index < bytes.len() {
        blob[offset] = bytes[index];
        offset += 1;
        index += 1;
    }
    offset
}

/// Writes `value` as a little-endian base-128 varint, as Go's `binary.PutUvarint` does.
const fn put_uvarint(blob: &mut [u8], mut offset: usize, mut value: usize) -> usize {
    while value >= 0x80 {
        blob[offset] = (value as u8) | 0x80;
        value >>= 7;
        offset += 1;
    }
    blob[offset] = value as u8;
    offset + 1
}

const fn encode_blob() -> [u8; BLOB_LEN] {
    let mut blob = [0u8; BLOB_LEN];

    // Header: magic, pointer size, flags; the remaining 16 bytes stay zero because they
    // hold pointers only in the pre-1.18 format.
    let mut offset = put_bytes(&mut blob, 0, MAGIC);
    blob[offset] = std::mem::size_of::<usize>() as u8;
    let endian_flag = if cfg!(target_endian = "big") {
        FLAG_BIG_ENDIAN
    } else {
        0
    };
    blob[offset + 1] = FLAG_INLINE_STRINGS | endian_flag;
    offset = HEADER_LEN;

    offset = put_uvarint(&mut blob, offset, GO_VERSION.len());
    offset = put_bytes(&mut blob, offset, GO_VERSION.as_bytes());

    offset = put_uvarint(&mut blob, offset, MODINFO_LEN);
    offset = put_bytes(&mut blob, offset, MODINFO_START);
    let mut index = 0;
    while index < MODINFO_PIECES.len() {
        offset = put_bytes(&mut blob, offset, MODINFO_PIECES[index].as_bytes());
        index += 1;
    }
    offset = put_bytes(&mut blob, offset, MODINFO_END);

    assert!(offset == BLOB_LEN, "build-info blob length mismatch");
    blob
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version;

    /// Reads a uvarint the way Go's `binary.Uvarint` does; returns the value and its length.
    fn read_uvarint(bytes: &[u8]) -> (usize, usize) {
        let mut value = 0usize;
        for (index, byte) in bytes.iter().enumerate().take(10) {
            value |= usize::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return (value, index + 1);
            }
        }
        panic!("unterminated uvarint in {bytes:?}");
    }

    /// Splits the blob into the Go version and the framed module information.
    fn decode_strings(blob: &[u8]) -> (&[u8], &[u8]) {
        let rest = &blob[HEADER_LEN..];
        let (version_len, prefix) = read_uvarint(rest);
        let (version, rest) = rest[prefix..].split_at(version_len);
        let (modinfo_len, prefix) = read_uvarint(rest);
        let modinfo = &rest[prefix..prefix + modinfo_len];
        assert_eq!(
            prefix + modinfo_len,
            rest.len(),
            "bytes after the module information"
        );
        (version, modinfo)
    }

    #[test]
    fn header_has_magic_and_flags() {
        let blob = &GO_BUILD_INFO.0;

        assert_eq!(&blob[..14], MAGIC);
        assert_eq!(usize::from(blob[14]), std::mem::size_of::<usize>());
        assert_eq!(blob[15] & FLAG_INLINE_STRINGS, FLAG_INLINE_STRINGS);
        assert!(blob[16..HEADER_LEN].iter().all(|&byte| byte == 0));
    }

    #[test]
    fn blob_is_sixteen_byte_aligned() {
        let address = std::ptr::addr_of!(GO_BUILD_INFO) as usize;

        assert_eq!(address % 16, 0);
    }

    #[test]
    fn blob_carries_go_version() {
        let (version, _) = decode_strings(&GO_BUILD_INFO.0);

        assert_eq!(version, GO_VERSION.as_bytes());
        assert!(GO_VERSION.starts_with("go1."), "{GO_VERSION}");
    }

    #[test]
    fn modinfo_has_go_framing() {
        let (_, modinfo) = decode_strings(&GO_BUILD_INFO.0);

        assert!(modinfo.len() >= 33);
        assert_eq!(modinfo[modinfo.len() - 17], b'\n');
        assert_eq!(&modinfo[..16], MODINFO_START);
        assert_eq!(&modinfo[modinfo.len() - 16..], MODINFO_END);
    }

    #[test]
    fn modinfo_matches_version_report() {
        let (_, modinfo) = decode_strings(&GO_BUILD_INFO.0);
        let body = std::str::from_utf8(&modinfo[16..modinfo.len() - 16]).unwrap();

        assert_eq!(body, version::render_modinfo(&version::version_info()));
    }

    #[test]
    fn magic_appears_once() {
        let blob = &GO_BUILD_INFO.0;
        let count = blob
            .windows(MAGIC.len())
            .filter(|window| window == MAGIC)
            .count();

        assert_eq!(count, 1);
    }

    #[test]
    fn uvarint_matches_go_encoding() {
        // Encodings produced by Go's binary.PutUvarint for the same values.
        let cases: [(usize, &[u8]); 5] = [
            (0, &[0x00]),
            (0x7f, &[0x7f]),
            (0x80, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (0x4000, &[0x80, 0x80, 0x01]),
        ];

        for (value, expected) in cases {
            let mut buffer = [0u8; 10];
            let end = put_uvarint(&mut buffer, 0, value);

            assert_eq!(&buffer[..end], expected, "value {value}");
            assert_eq!(uvarint_len(value), expected.len(), "value {value}");
            assert_eq!(
                read_uvarint(expected),
                (value, expected.len()),
                "value {value}"
            );
        }
    }
}
