#!/usr/bin/env bash
# Fill fuzz/corpus/<target>/ with seeds (issue 7): real captures, the project's own captures and
# rulesets, and a few helper protocol messages. Idempotent: seeds are named by content hash, and
# existing corpus entries (what earlier fuzzing found) are kept.
#
#   scripts/fuzz-seed.sh            # from the repository root, or from anywhere
#
# Sources (missing ones are skipped with a note):
#   ../shared/corpus/pcaps/*        real pcap / pcapng files (capture and engine targets)
#   examples/**/*.pcap, crates/*/tests/data/*.pcap*   the project's captures
#   examples/**/*.v4|*.v6, crates/rules/tests/data/*, crates/*/tests/data/*.v4|*.v6   rulesets
#   built-in FTP / IRC / Amanda / SIP messages (below)
#
# Captures larger than 64 KiB are cut to their first 64 KiB (a cut capture is a good seed too: the
# reader reports the truncation), so that libFuzzer's input size stays small.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
corpus="$root/fuzz/corpus"
shared="${STATEWALL_SHARED:-$root/../shared}"
max_seed=65536

mkdir -p "$corpus"/{capture,engine,rules,helper_ftp,helper_irc,helper_amanda,helper_sip}

# seed TARGET PREFIX_HEX < data   — store PREFIX + data under its hash
seed() {
    local target="$1" prefix="${2:-}" tmp
    tmp="$(mktemp)"
    { if [ -n "$prefix" ]; then printf "%b" "$prefix"; fi; head -c "$max_seed"; } >"$tmp"
    local h
    h="$(sha1sum "$tmp" | cut -c1-16)"
    mv "$tmp" "$corpus/$target/seed-$h"
}

count=0
add_capture() {
    seed capture "" <"$1"
    seed engine "" <"$1"
    count=$((count + 1))
}

if [ -d "$shared/corpus/pcaps" ]; then
    for f in "$shared"/corpus/pcaps/*; do
        [ -f "$f" ] && add_capture "$f"
    done
else
    echo "fuzz-seed: $shared/corpus/pcaps absent: no real captures" >&2
fi
while IFS= read -r -d '' f; do
    add_capture "$f"
done < <(find "$root/examples" "$root"/crates/*/tests/data -type f \( -name '*.pcap' -o -name '*.pcapng' \) -print0 2>/dev/null)
echo "fuzz-seed: $count captures -> capture, engine"

rules=0
while IFS= read -r -d '' f; do
    case "$f" in
        *.v6 | *.rules6 | *.save6) seed rules '\x01' <"$f" ;;
        *) seed rules '\x00' <"$f" ;;
    esac
    rules=$((rules + 1))
done < <(find "$root/examples" "$root/crates/rules/tests/data" "$root"/crates/*/tests/data -type f \
    \( -name '*.v4' -o -name '*.v6' -o -name '*.rules' -o -name '*.rules6' -o -name '*.save' -o -name '*.save6' \) -print0 2>/dev/null)
echo "fuzz-seed: $rules rulesets -> rules"

# FTP: first byte bit 0 = reply direction, bit 1 = IPv6 control connection.
seed helper_ftp '\x00' <<<$'PORT 192,0,2,10,7,138\r'
seed helper_ftp '\x00' <<<$'EPRT |1|192.0.2.10|1930|\r'
seed helper_ftp '\x02' <<<$'EPRT |2|2001:db8::10|1930|\r'
seed helper_ftp '\x02' <<<$'EPRT |2|::ffff:192.0.2.1|1930|\r'
seed helper_ftp '\x01' <<<$'227 Entering Passive Mode (192,0,2,10,7,138).\r'
seed helper_ftp '\x03' <<<$'229 Entering Extended Passive Mode (|||6446|)\r'
seed helper_ftp '\x00' <<<$'USER anonymous\r'
# IRC: 8 bytes of client addresses (192.0.2.10 twice), then the payload.
seed helper_irc '\xc0\x00\x02\x0a\x00\x00\x00\x00' <<<$'PRIVMSG bob :\x01DCC SEND file.txt 3221225994 1024 2048\x01\r'
seed helper_irc '\xc0\x00\x02\x0a\x00\x00\x00\x00' <<<$'PRIVMSG bob :\x01DCC CHAT chat 3221225994 5000\x01\r'
seed helper_irc '\xc0\x00\x02\x0a\xff\x0a\x00\x01' <<<$'PRIVMSG bob :\x01DCC TSEND f 167772161 6000 10\x01\r'
# Amanda: a reply naming its ports.
seed helper_amanda '' <<<$'Amanda 2.4 REP HANDLE 000-00000000 SEQ 1\nCONNECT DATA 50000 MESG 50001 INDEX 50002\n'
seed helper_amanda '' <<<$'Amanda 2.4 REP HANDLE 000-00000000 SEQ 1\nCONNECT DATA 50000\n'
# SIP: flag byte, then messages separated by 0xff (bits 5-7 of the flags: reply direction).
invite=$'INVITE sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060\r\nCSeq: 7 INVITE\r\nContact: <sip:alice@10.0.0.1>\r\nContent-Length: 100\r\n\r\nv=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\nm=video 51372 RTP/AVP 31\r\n'
ok=$'SIP/2.0 200 OK\r\nCSeq: 7 INVITE\r\nContent-Length: 50\r\n\r\nv=0\r\nc=IN IP4 10.0.0.2\r\nm=audio 3000 RTP/AVP 0\r\n'
register=$'REGISTER sip:10.0.0.2 SIP/2.0\r\nCSeq: 3 REGISTER\r\nContact: <sip:alice@10.0.0.1:5070;transport=udp>;expires=600\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n'
reg_ok=$'SIP/2.0 200 OK\r\nCSeq: 3 REGISTER\r\nContact: <sip:alice@10.0.0.1:5070>;expires=600\r\n\r\n'
bye=$'BYE sip:bob@10.0.0.2 SIP/2.0\r\nCSeq: 8 BYE\r\n\r\n'
printf '%s\xff%s\xff%s' "$invite" "$ok" "$bye" | seed helper_sip '\x40'
printf '%s\xff%s' "$register" "$reg_ok" | seed helper_sip '\x40'
printf '%s' "$invite" | seed helper_sip '\x02'
echo "fuzz-seed: helper messages -> helper_ftp, helper_irc, helper_amanda, helper_sip"

for t in "$corpus"/*/; do
    printf '  %-14s %5d files %8s\n' "$(basename "$t")" "$(find "$t" -type f | wc -l)" "$(du -sh "$t" | cut -f1)"
done
