/*
 * ct-scale: a small driver around Open vSwitch's userspace conntrack
 * (lib/conntrack.c, linked statically from the OVS 3.1.0 build in
 * $OVS_DIR/openvswitch, see run.sh), for the figures that `ovstest test-conntrack`
 * cannot give:
 *
 *   ct-scale udp N [passes]
 *       Prebuilds N distinct IPv4/UDP packets (distinct 5-tuples), then
 *       times: (1) one commit pass over them = N new connections into a
 *       table that grows from 0 to N, (2) `passes` more passes over the
 *       same packets = lookups in an N table: first one pass while the
 *       connections are unreplied (+new), then one reply pass, then
 *       `passes` passes of established lookups; finally N/10 more new
 *       connections into the full table, timed on their own.
 *       Memory per connection = VmRSS growth over pass (1) / N.
 *
 *   ct-scale hot N
 *       One established UDP flow; N packets of it in batches of 32.
 *
 *   ct-scale pcap FILE [passes]
 *       Loads the whole capture into memory first (untimed), then times
 *       exactly what `ovstest test-conntrack pcap FILE 32` does per batch
 *       (flow_extract + conntrack_execute with commit, zone 0, batches of
 *       32) but without reading the file or printing per packet.
 *
 * Batches of 32 (NETDEV_MAX_BURST) everywhere, as in test-conntrack.
 * Single-threaded; run it under `taskset -c 1`.
 */
#include <config.h>
#include "conntrack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "csum.h"
#include "dp-packet.h"
#include "fatal-signal.h"
#include "flow.h"
#include "netdev.h"
#include "ovs-rcu.h"
#include "packets.h"
#include "pcap-file.h"
#include "timeval.h"
#include "util.h"
#include "openvswitch/vlog.h"

/* Same frame as test-conntrack's benchmark: Ethernet + IPv4 + UDP(8 bytes,
 * checksum 0), 42 bytes. */
static const char payload[] = "50540000000a50540000000908004500001c0000000000"
                              "11a4cd0a0101010a0101020001000200080000";

static double
now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double
cpu_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wall clock and this thread's CPU time: the machine may be shared, and the
 * CPU time leaves out the time the thread was not running. */
struct stamp {
    double wall, cpu;
};

static struct stamp
stamp_now(void)
{
    struct stamp s;
    s.wall = now_sec();
    s.cpu = cpu_sec();
    return s;
}

static void
report(const char *label, size_t n, struct stamp a, struct stamp b)
{
    double w = b.wall - a.wall, c = b.cpu - a.cpu;
    printf("  %s: %zu pkts, wall %.3f s = %.3f Mpps (%.1f ns/pkt); "
           "cpu %.3f s = %.3f Mpps (%.1f ns/pkt)\n", label, n, w,
           n / w / 1e6, w * 1e9 / n, c, n / c / 1e6, c * 1e9 / n);
}

static long
rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6)) {
            kb = strtol(line + 6, NULL, 10);
        }
    }
    if (f) {
        fclose(f);
    }
    return kb;
}

static uint32_t
nconns(struct conntrack *ct)
{
    uint32_t n = 0;
    conntrack_get_nconns(ct, &n);
    return n;
}

struct state_count {
    size_t new, est, rel, rpl, inv, trk, other;
};

static void
count_states(struct dp_packet **pkts, size_t n, struct state_count *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < n; i++) {
        uint8_t s = pkts[i]->md.ct_state;
        if (s & CS_INVALID) {
            c->inv++;
        } else if (s & CS_NEW) {
            c->new++;
        } else if (s & CS_ESTABLISHED) {
            c->est++;
        } else if (s & CS_RELATED) {
            c->rel++;
        } else {
            c->other++;
        }
        if (s & CS_REPLY_DIR) {
            c->rpl++;
        }
        if (s & CS_TRACKED) {
            c->trk++;
        }
    }
}

static void
print_states(const char *what, const struct state_count *c)
{
    printf("  %s ct_state: new=%zu est=%zu rel=%zu inv=%zu other=%zu "
           "(rpl=%zu trk=%zu)\n", what, c->new, c->est, c->rel, c->inv,
           c->other, c->rpl, c->trk);
}

/* Reset per-packet conntrack metadata the way the datapath does for a
 * freshly received packet (pkt_metadata_init clears ct_state and the cached
 * conn pointer). */
static void
reset_md(struct dp_packet **pkts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pkts[i]->md.ct_state = 0;
        pkt_metadata_init_conn(&pkts[i]->md);
    }
}

/* One pass over 'pkts' through conntrack in batches of 32, all IPv4. */
static void
udp_pass(struct conntrack *ct, struct dp_packet **pkts, size_t n)
{
    long long now = time_msec();
    for (size_t i = 0; i < n; i += NETDEV_MAX_BURST) {
        struct dp_packet_batch batch;
        dp_packet_batch_init(&batch);
        size_t end = MIN(n, i + NETDEV_MAX_BURST);
        for (size_t j = i; j < end; j++) {
            dp_packet_batch_add(&batch, pkts[j]);
        }
        conntrack_execute(ct, &batch, htons(ETH_TYPE_IP), false, true, 0,
                          NULL, NULL, 0, 0, NULL, NULL, now, 0);
    }
}

/* Flow i: 10.(i>>4).x -> 10.1.1.2, sport 1024 + (i & 15), dport 53.
 * Distinct for i < 2^28.  'reply' swaps addresses and ports.  The IP
 * checksum is recomputed so that OVS's software validation passes; the UDP
 * checksum is 0 (allowed for IPv4, and OVS skips validating it then). */
static struct dp_packet *
build_udp(size_t i, bool reply)
{
    struct flow flow;
    struct dp_packet *pkt = dp_packet_new(sizeof payload / 2);
    dp_packet_put_hex(pkt, payload, NULL);
    flow_extract(pkt, &flow);
    struct ip_header *ip = dp_packet_l3(pkt);
    struct udp_header *udp = dp_packet_l4(pkt);
    uint32_t a = 0x0a000000u | ((uint32_t) (i >> 4) & 0xffffff);
    uint32_t b = 0x0a010102u;
    ovs_be16 pa = htons(1024 + (i & 15)), pb = htons(53);
    put_16aligned_be32(&ip->ip_src, htonl(reply ? b : a));
    put_16aligned_be32(&ip->ip_dst, htonl(reply ? a : b));
    ip->ip_csum = 0;
    ip->ip_csum = csum(ip, IP_HEADER_LEN);
    udp->udp_src = reply ? pb : pa;
    udp->udp_dst = reply ? pa : pb;
    return pkt;
}

static void
mode_udp(size_t n, int passes)
{
    struct dp_packet **pkts = xmalloc(n * sizeof *pkts);
    struct dp_packet **rpkts = xmalloc(n * sizeof *rpkts);
    size_t extra = n / 10;
    struct dp_packet **xpkts = xmalloc((extra + 1) * sizeof *xpkts);
    for (size_t i = 0; i < n; i++) {
        rpkts[i] = build_udp(i, true);
    }
    for (size_t i = 0; i < extra; i++) {
        xpkts[i] = build_udp(n + i, false);
    }

    for (size_t i = 0; i < n; i++) {
        pkts[i] = build_udp(i, false);
    }
    struct conntrack *ct = conntrack_init();
    long rss0 = rss_kb();
    struct stamp t0 = stamp_now();
    udp_pass(ct, pkts, n);
    struct stamp t1 = stamp_now();
    long rss1 = rss_kb();
    struct state_count c;
    count_states(pkts, n, &c);
    uint32_t nc = nconns(ct);
    printf("udp N=%zu: conns in table after insert=%u\n", n, nc);
    report("insert pass (new conns, table 0 -> N)", n, t0, t1);
    print_states("insert", &c);
    printf("  RSS before=%ld kB after=%ld kB growth=%ld kB => %.1f "
           "bytes/conn\n", rss0, rss1, rss1 - rss0,
           (rss1 - rss0) * 1024.0 / (nc ? nc : 1));

    /* Lookups of unreplied UDP connections: OVS reports them +new (like
     * Linux's IP_CT_NEW until a reply is seen). */
    reset_md(pkts, n);
    struct stamp u0 = stamp_now();
    udp_pass(ct, pkts, n);
    struct stamp u1 = stamp_now();
    count_states(pkts, n, &c);
    report("unreplied lookup pass", n, u0, u1);
    print_states("unreplied", &c);

    /* One reply per connection makes them all established. */
    struct stamp r0 = stamp_now();
    udp_pass(ct, rpkts, n);
    struct stamp r1 = stamp_now();
    count_states(rpkts, n, &c);
    report("reply pass", n, r0, r1);
    print_states("reply", &c);

    for (int p = 0; p < passes; p++) {
        reset_md(pkts, n);
        struct stamp a = stamp_now();
        udp_pass(ct, pkts, n);
        struct stamp b = stamp_now();
        count_states(pkts, n, &c);
        char label[64];
        snprintf(label, sizeof label, "established lookup pass %d", p + 1);
        report(label, n, a, b);
        print_states("lookup", &c);
    }

    /* New connections into the already full N table: N/10 more flows. */
    if (extra) {
        struct stamp x0 = stamp_now();
        udp_pass(ct, xpkts, extra);
        struct stamp x1 = stamp_now();
        count_states(xpkts, extra, &c);
        report("insert N/10 more new conns into the full table", extra,
               x0, x1);
        printf("  conns in table=%u\n", nconns(ct));
        print_states("extra insert", &c);
    }
    conntrack_destroy(ct);
    for (size_t i = 0; i < extra; i++) {
        dp_packet_delete(xpkts[i]);
    }
    free(xpkts);
    for (size_t i = 0; i < n; i++) {
        dp_packet_delete(pkts[i]);
        dp_packet_delete(rpkts[i]);
    }
    free(pkts);
    free(rpkts);
}

/* One established UDP flow (one packet each way first), then 'n' packets of
 * its original direction in batches of 32 copies, the cached conn pointer
 * cleared before each batch as test-conntrack's benchmark does, so every
 * packet takes the full extract + hash + lookup + update path. */
static void
mode_hot(size_t n)
{
    struct dp_packet *pkts[NETDEV_MAX_BURST];
    struct dp_packet *r = build_udp(0, true);
    for (int i = 0; i < NETDEV_MAX_BURST; i++) {
        pkts[i] = build_udp(0, false);
    }
    struct conntrack *ct = conntrack_init();
    udp_pass(ct, pkts, 1);
    udp_pass(ct, &r, 1);
    struct stamp a = stamp_now();
    for (size_t i = 0; i < n; i += NETDEV_MAX_BURST) {
        reset_md(pkts, NETDEV_MAX_BURST);
        udp_pass(ct, pkts, NETDEV_MAX_BURST);
    }
    struct stamp b = stamp_now();
    struct state_count c;
    count_states(pkts, NETDEV_MAX_BURST, &c);
    size_t done = (n + NETDEV_MAX_BURST - 1) / NETDEV_MAX_BURST
                  * NETDEV_MAX_BURST;
    printf("hot:\n");
    report("hot established flow", done, a, b);
    print_states("last batch", &c);
    conntrack_destroy(ct);
}

/* Exactly test-conntrack.c's pcap_batch_execute_conntrack(). */
static void
pcap_batch_execute_conntrack(struct conntrack *ct_,
                             struct dp_packet_batch *pkt_batch)
{
    struct dp_packet_batch new_batch;
    ovs_be16 dl_type = htons(0);
    long long now = time_msec();

    dp_packet_batch_init(&new_batch);

    struct dp_packet *packet;
    DP_PACKET_BATCH_FOR_EACH (i, packet, pkt_batch) {
        struct flow flow;

        flow_extract(packet, &flow);

        if (dp_packet_batch_is_empty(&new_batch)) {
            dl_type = flow.dl_type;
        }

        if (flow.dl_type != dl_type) {
            conntrack_execute(ct_, &new_batch, dl_type, false, true, 0,
                              NULL, NULL, 0, 0, NULL, NULL, now, 0);
            dp_packet_batch_init(&new_batch);
        }
        dp_packet_batch_add(&new_batch, packet);
    }

    if (!dp_packet_batch_is_empty(&new_batch)) {
        conntrack_execute(ct_, &new_batch, dl_type, false, true, 0, NULL, NULL,
                          0, 0, NULL, NULL, now, 0);
    }
}

static void
mode_pcap(const char *file, int passes)
{
    struct pcap_file *pcap = ovs_pcap_open(file, "rb");
    if (!pcap) {
        ovs_fatal(0, "cannot open %s", file);
    }
    size_t cap = 1 << 20, n = 0;
    struct dp_packet **pkts = xmalloc(cap * sizeof *pkts);
    for (;;) {
        struct dp_packet *packet;
        if (ovs_pcap_read(pcap, &packet, NULL)) {
            break;
        }
        if (n == cap) {
            cap *= 2;
            pkts = xrealloc(pkts, cap * sizeof *pkts);
        }
        pkts[n++] = packet;
    }
    ovs_pcap_close(pcap);
    printf("pcap %s: %zu packets loaded\n", file, n);

    for (int p = 0; p < passes; p++) {
        /* Each pass starts with an empty table, like a fresh
         * `ovstest test-conntrack pcap` run. */
        reset_md(pkts, n);
        struct conntrack *ct = conntrack_init();
        long rss0 = rss_kb();
        struct stamp a = stamp_now();
        for (size_t i = 0; i < n; i += NETDEV_MAX_BURST) {
            struct dp_packet_batch batch;
            dp_packet_batch_init(&batch);
            size_t end = MIN(n, i + NETDEV_MAX_BURST);
            for (size_t j = i; j < end; j++) {
                dp_packet_batch_add(&batch, pkts[j]);
            }
            pcap_batch_execute_conntrack(ct, &batch);
        }
        struct stamp b = stamp_now();
        long rss1 = rss_kb();
        uint32_t nc = nconns(ct);
        struct state_count c;
        count_states(pkts, n, &c);
        char label[64];
        snprintf(label, sizeof label, "pcap pass %d", p + 1);
        report(label, n, a, b);
        printf("  conns in table=%u; RSS growth %ld kB => %.1f bytes/conn\n",
               nc, rss1 - rss0, (rss1 - rss0) * 1024.0 / (nc ? nc : 1));
        print_states("pcap", &c);
        conntrack_destroy(ct);
        ovsrcu_quiesce();
    }
    for (size_t i = 0; i < n; i++) {
        dp_packet_delete(pkts[i]);
    }
    free(pkts);
}

int
main(int argc, char *argv[])
{
    set_program_name(argv[0]);
    vlog_set_levels(NULL, VLF_ANY_DESTINATION, VLL_OFF);
    fatal_signal_init();
    if (argc >= 3 && !strcmp(argv[1], "udp")) {
        mode_udp(strtoul(argv[2], NULL, 0), argc > 3 ? atoi(argv[3]) : 3);
    } else if (argc >= 3 && !strcmp(argv[1], "hot")) {
        mode_hot(strtoul(argv[2], NULL, 0));
    } else if (argc >= 3 && !strcmp(argv[1], "pcap")) {
        mode_pcap(argv[2], argc > 3 ? atoi(argv[3]) : 1);
    } else {
        fprintf(stderr, "usage: %s udp N [passes] | hot N | pcap FILE [passes]\n",
                argv[0]);
        return 1;
    }
    return 0;
}
