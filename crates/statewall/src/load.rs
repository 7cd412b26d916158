//! Turning command-line arguments into a ready setup: ruleset, host model, conntrack sysctls, captures.
//! Every failure becomes a miette report naming the file (and line:column for rulesets).

use std::path::{Path, PathBuf};

use miette::{Diagnostic, NamedSource, SourceSpan};

use crate::cli::HostArgs;

/// A ruleset error pointing into the file.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{file}:{line}:{column}: {message}")]
pub struct RuleDiagnostic {
    file: String,
    line: usize,
    column: usize,
    message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("{label}")]
    span: SourceSpan,
    label: String,
    #[help]
    hint: Option<String>,
}

/// Parses the IPv4 ruleset at `path` (iptables-save format).
pub fn ruleset(path: &Path) -> miette::Result<rules::Ruleset> {
    ruleset_family(path, rules::Family::V4)
}

/// Parses the ruleset at `path` for `family` (iptables-save or ip6tables-save format).
pub fn ruleset_family(path: &Path, family: rules::Family) -> miette::Result<rules::Ruleset> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| miette::miette!("cannot read ruleset {}: {e}", path.display()))?;
    for w in unmodelled_helpers(&text) {
        eprintln!("warning: {}:{w}", path.display());
    }
    rules::parse_family(&text, family).map_err(|e| {
        let (offset, len) = e.span();
        let name = path.display().to_string();
        miette::Report::new(RuleDiagnostic {
            file: name.clone(),
            line: e.line() as usize,
            column: e.column() as usize,
            message: e.message().to_string(),
            label: match e.expected() {
                Some(x) => format!("expected {x}"),
                None => "here".to_string(),
            },
            hint: e.hint().map(str::to_string),
            span: SourceSpan::new(offset.into(), len),
            src: NamedSource::new(name, text.clone()),
        })
    })
}

/// `LINE: ...` for every `-j CT --helper NAME` whose helper the kernel has but statewall does not parse
/// (H.323, PPTP, SANE, SNMP, NetBIOS-NS, ...): the entry gets `helper=NAME`, but no expectation is ever
/// created, so connections the kernel would make RELATED are NEW here.
fn unmodelled_helpers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ct_target = words.windows(2).any(|w| w == ["-j", "CT"]);
        let helper =
            words.windows(2).find(|w| w.first() == Some(&"--helper")).and_then(|w| w.get(1).copied());
        let Some(name) = helper.filter(|_| ct_target) else { continue };
        let name = name.trim_matches('"');
        let modelled = [6u8, 17].iter().any(|&p| conntrack::HelperKind::lookup(name, p).is_some());
        if !modelled {
            out.push(format!(
                "{}: CT --helper {name}: recorded on the entry (helper={name}), but statewall does not parse \
                 this protocol, so no expectation is created and connections the kernel would make RELATED \
                 are NEW here (modelled: ftp, tftp, irc, sip, amanda)",
                n + 1
            ));
        }
    }
    out
}

/// The host model from `--local` / `--host`.
pub fn host(args: &HostArgs) -> miette::Result<engine::Host> {
    if let Some(path) = &args.host {
        let text = std::fs::read_to_string(path)
            .map_err(|e| miette::miette!("cannot read host file {}: {e}", path.display()))?;
        let mut host =
            engine::Host::from_toml(&text).map_err(|e| miette::miette!("{}: {e}", path.display()))?;
        let kv: Vec<(&str, &str)> = args
            .sysctl
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, _)| is_host_sysctl(k))
            .collect();
        apply_host_sysctls(&mut host, &kv)?;
        return Ok(host);
    }
    let mut addrs = Vec::new();
    for a in &args.local {
        let p: engine::host::Prefix = a.parse().map_err(|e| miette::miette!("--local {a}: {e}"))?;
        addrs.push(p);
    }
    let mut host_sysctls = Vec::new();
    for kv in &args.sysctl {
        if let Some((k, v)) = kv.split_once('=') {
            if is_host_sysctl(k.trim()) {
                host_sysctls.push((k.trim(), v.trim()));
            }
        }
    }
    if addrs.is_empty() {
        eprintln!(
            "warning: no --local or --host given: every packet is treated as forwarded (the host owns no address)"
        );
    }
    let mut host = engine::Host::with_locals(&addrs);
    apply_host_sysctls(&mut host, &host_sysctls)?;
    Ok(host)
}

/// The IPv4 routing sysctls the host model understands (everything else goes to conntrack).
fn is_host_sysctl(key: &str) -> bool {
    let k = key.replace('/', ".");
    // One forwarding switch models both families (the host model has no per-family routing yet).
    matches!(
        k.as_str(),
        "net.ipv4.ip_forward" | "net.ipv4.conf.all.forwarding" | "net.ipv6.conf.all.forwarding"
    )
}

fn apply_host_sysctls(host: &mut engine::Host, kv: &[(&str, &str)]) -> miette::Result<()> {
    for (k, v) in kv {
        match *v {
            "0" => host.set_forwarding(false),
            "1" => host.set_forwarding(true),
            _ => return Err(miette::miette!("--sysctl {k}={v}: expected 0 or 1")),
        }
    }
    Ok(())
}

/// Conntrack configuration from `--sysctl` (kernel defaults otherwise).
pub fn conntrack_config(args: &HostArgs) -> miette::Result<conntrack::Config> {
    let mut cfg = conntrack::Config::default();
    for kv in &args.sysctl {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            miette::miette!("--sysctl {kv}: expected KEY=VALUE, e.g. net.netfilter.nf_conntrack_tcp_loose=0")
        })?;
        if is_host_sysctl(k.trim()) || defrag_key(k.trim()).is_some() {
            continue;
        }
        cfg.set(k.trim(), v.trim()).map_err(|e| miette::miette!("--sysctl {kv}: {e}"))?;
    }
    Ok(cfg)
}

/// The defragmentation sysctls (nf_defrag_ipv4 uses the IPv4 stack's, nf_defrag_ipv6 its own).
#[derive(Clone, Copy)]
enum DefragKey {
    Ipv4Time,
    Ipv4High,
    Ipv6Time,
    Ipv6High,
}

fn defrag_key(key: &str) -> Option<DefragKey> {
    match key.replace('/', ".").trim_start_matches(".proc.sys.") {
        "net.ipv4.ipfrag_time" => Some(DefragKey::Ipv4Time),
        "net.ipv4.ipfrag_high_thresh" => Some(DefragKey::Ipv4High),
        "net.netfilter.nf_conntrack_frag6_timeout" | "nf_conntrack_frag6_timeout" => {
            Some(DefragKey::Ipv6Time)
        }
        "net.netfilter.nf_conntrack_frag6_high_thresh" | "nf_conntrack_frag6_high_thresh" => {
            Some(DefragKey::Ipv6High)
        }
        _ => None,
    }
}

/// Reassembly settings from `--sysctl` (kernel defaults otherwise). The memory threshold is one value for
/// both families in the model; the last one given wins.
pub fn defrag_config(args: &HostArgs) -> miette::Result<wire::defrag::DefragConfig> {
    let mut cfg = wire::defrag::DefragConfig::default();
    for kv in &args.sysctl {
        let Some((k, v)) = kv.split_once('=') else { continue };
        let Some(key) = defrag_key(k.trim()) else { continue };
        let n: u64 = v.trim().parse().map_err(|_| miette::miette!("--sysctl {kv}: expected a number"))?;
        if n == 0 {
            return Err(miette::miette!("--sysctl {kv}: must be positive"));
        }
        match key {
            DefragKey::Ipv4Time => cfg.ipv4_timeout_secs = n,
            DefragKey::Ipv6Time => cfg.ipv6_timeout_secs = n,
            DefragKey::Ipv4High | DefragKey::Ipv6High => {
                cfg.high_thresh = usize::try_from(n).unwrap_or(usize::MAX)
            }
        }
    }
    Ok(cfg)
}

/// One capture file, parsed whole (for the commands that need several passes: `verify`, `bench`).
pub struct LoadedCapture {
    pub path: PathBuf,
    pub capture: wire::capture::Capture,
}

/// Reads and parses capture files whole. Not a capture at all: an error (exit 2). Truncated or corrupt after
/// some records: the records read are kept and `capture.truncated` says where it stopped. The file is read
/// through [`wire::capture::CaptureReader`]: memory holds the records, not also the file.
pub fn captures(paths: &[PathBuf]) -> miette::Result<Vec<LoadedCapture>> {
    let mut out = Vec::new();
    for c in open_captures(paths)? {
        let OpenCapture { path, mut reader, .. } = c;
        let mut records = Vec::new();
        let mut truncated = None;
        while let Some(r) = reader.next_record() {
            match r {
                Ok(r) => records.push(r.to_record()),
                Err(e) => truncated = Some(e),
            }
        }
        let capture = wire::capture::Capture { format: reader.format(), records, truncated };
        out.push(LoadedCapture { path, capture });
    }
    Ok(out)
}

/// The byte source of an [`OpenCapture`].
pub type CaptureSource = Box<dyn std::io::Read>;

/// One capture file opened for a single streaming pass: its header has been read, records come one at a
/// time from `reader` (memory bounded whatever the file's size).
pub struct OpenCapture {
    pub path: PathBuf,
    /// The file's size in bytes (0 when unknown), for progress.
    pub size: u64,
    pub reader: wire::capture::CaptureReader<CaptureSource>,
}

/// Opens every capture file and reads its header, so that a file that is no capture at all (exit 2) fails
/// before any work or output. Problems later in a file come out of its reader, after the records before them.
pub fn open_captures(paths: &[PathBuf]) -> miette::Result<Vec<OpenCapture>> {
    let mut out = Vec::new();
    for path in paths {
        let file = std::fs::File::open(path)
            .map_err(|e| miette::miette!("cannot read capture {}: {e}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let src: CaptureSource = Box::new(file);
        let reader = wire::capture::CaptureReader::new(src).map_err(|e| match e {
            // Unreadable (a directory, an I/O error): worded like a failed read of the whole file.
            wire::CaptureError::Io { what, .. } => {
                miette::miette!("cannot read capture {}: {what}", path.display())
            }
            e => miette::miette!("{}: {e}", path.display()),
        })?;
        out.push(OpenCapture { path: path.clone(), size, reader });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    #[test]
    fn unmodelled_helpers_are_named_with_their_line() {
        let text = "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp --dport 21 -j CT --helper ftp\n\
                    -A PREROUTING -p tcp --dport 1723 -j CT --helper pptp\n\
                    -A PREROUTING -m helper --helper snmp -j ACCEPT\nCOMMIT\n";
        let w = super::unmodelled_helpers(text);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("4: CT --helper pptp:"), "{w:?}");
    }
}
