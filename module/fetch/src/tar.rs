//! Just enough of the tar format for Istio's "OCI standard image" of a Wasm plugin: find
//! `plugin.wasm` in a layer, and write a layer holding only that file.

/// The file Istio's image format keeps the module in.
pub const PLUGIN_FILE: &str = "plugin.wasm";

const BLOCK: usize = 512;

/// The content of the regular file `plugin.wasm` (at the root, `./` allowed) in a tar
/// archive, or why there is none.
pub fn find_plugin(archive: &[u8]) -> Result<Vec<u8>, String> {
    let mut at = 0;
    let mut long_name: Option<String> = None;
    while at + BLOCK <= archive.len() {
        let header = &archive[at..at + BLOCK];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size = octal(&header[124..136])
            .ok_or_else(|| format!("a tar header at byte {at} has an unreadable size"))?;
        let size = usize::try_from(size).map_err(|_| "a tar entry is too large".to_string())?;
        let data_start = at + BLOCK;
        let data_end = data_start
            .checked_add(size)
            .filter(|end| *end <= archive.len())
            .ok_or_else(|| format!("the tar archive ends inside an entry (at byte {at})"))?;
        let data = &archive[data_start..data_end];
        let kind = header[156];
        match kind {
            // A GNU long name for the next entry.
            b'L' => long_name = Some(c_string(data)),
            b'0' | 0 => {
                let name = match long_name.take() {
                    Some(name) => name,
                    None => {
                        let name = c_string(&header[0..100]);
                        let prefix = if &header[257..262] == b"ustar" {
                            c_string(&header[345..500])
                        } else {
                            String::new()
                        };
                        if prefix.is_empty() {
                            name
                        } else {
                            format!("{prefix}/{name}")
                        }
                    }
                };
                let name = name.trim_start_matches("./").trim_start_matches('/');
                if name == PLUGIN_FILE {
                    return Ok(data.to_vec());
                }
            }
            _ => long_name = None,
        }
        at = data_start + size.div_ceil(BLOCK) * BLOCK;
    }
    Err(format!("the layer has no `{PLUGIN_FILE}` file"))
}

/// A tar archive holding `plugin.wasm` (mode 0644, owned by root, time 0) and nothing else.
pub fn plugin_archive(module: &[u8]) -> Vec<u8> {
    let mut header = [0u8; BLOCK];
    header[..PLUGIN_FILE.len()].copy_from_slice(PLUGIN_FILE.as_bytes());
    put_octal(&mut header[100..108], 0o644);
    put_octal(&mut header[108..116], 0);
    put_octal(&mut header[116..124], 0);
    put_octal(&mut header[124..136], module.len() as u64);
    put_octal(&mut header[136..148], 0);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is taken with its own field as spaces.
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    let field = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(field.as_bytes());
    let mut out = Vec::with_capacity(BLOCK * 3 + module.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(module);
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn put_octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    field[..width].copy_from_slice(&text.as_bytes()[text.len() - width..]);
    field[width] = 0;
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_archive_reads_back() {
        let module = b"\0asm\x01\0\0\0 and some more bytes".repeat(40);
        let archive = plugin_archive(&module);
        assert_eq!(archive.len() % BLOCK, 0);
        assert_eq!(find_plugin(&archive), Ok(module));
    }

    #[test]
    fn the_checksum_is_what_tar_expects() {
        let archive = plugin_archive(b"x");
        let header = &archive[..BLOCK];
        let stored = octal(&header[148..156]).expect("checksum");
        let mut copy = header.to_vec();
        copy[148..156].fill(b' ');
        assert_eq!(stored, copy.iter().map(|&b| u64::from(b)).sum::<u64>());
    }

    #[test]
    fn other_files_are_skipped_and_absence_is_reported() {
        let mut archive = plugin_archive(b"first");
        // Rename the first entry; the archive then has no plugin.wasm.
        archive[..PLUGIN_FILE.len()].copy_from_slice(b"README.txt\0");
        assert!(find_plugin(&archive).is_err());
        let mut two = archive[..archive.len() - 2 * BLOCK].to_vec();
        two.extend_from_slice(&plugin_archive(b"second"));
        assert_eq!(find_plugin(&two), Ok(b"second".to_vec()));
        assert!(find_plugin(&two[..BLOCK + 10]).is_err());
    }
}
