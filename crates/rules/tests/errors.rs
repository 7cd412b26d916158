//! Golden error messages: every refusal names its line, column, byte span and token.
#![allow(clippy::unwrap_used)]

fn report(text: &str) -> String {
    report_family(text, rules::Family::V4)
}

fn report6(text: &str) -> String {
    report_family(text, rules::Family::V6)
}

fn report_family(text: &str, family: rules::Family) -> String {
    let e = rules::parse_family(text, family).unwrap_err();
    let (off, len) = e.span();
    let slice = text.get(off..off + len).unwrap_or("<bad span>");
    format!(
        "{e}\nkind={:?} line={} column={} span=({off},{len}) text=`{slice}`",
        e.kind(),
        e.line(),
        e.column()
    )
}

const F: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:u - [0:0]\n";

fn rule(r: &str) -> String {
    format!("{F}{r}\nCOMMIT\n")
}

macro_rules! golden {
    ($($name:ident => $text:expr;)*) => {$(
        #[test]
        fn $name() {
            insta::assert_snapshot!(stringify!($name), report(&$text));
        }
    )*};
}

golden! {
    nat_table_unsupported => "*raw\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n";
    unknown_table => "*bogus\nCOMMIT\n";
    missing_commit => "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n";
    missing_commit_before_next_table => "*filter\n*raw\nCOMMIT\n";
    unknown_match_module => rule("-A INPUT -m bogus --x 1 -j ACCEPT");
    unsupported_match_module => rule("-A INPUT -m hashlimit --hashlimit 1 -j ACCEPT");
    unknown_option_for_module => rule("-A INPUT -p tcp -m tcp --bogus 1 -j ACCEPT");
    port_option_without_protocol => rule("-A INPUT --dport 22 -j ACCEPT");
    missing_option_argument => rule("-A INPUT -p tcp --dport");
    bad_address => rule("-A INPUT -s 10.0.0.300 -j ACCEPT");
    bad_mask => rule("-A INPUT -s 10.0.0.0/33 -j ACCEPT");
    host_name_address => rule("-A INPUT -s example.com -j ACCEPT");
    bad_port => rule("-A INPUT -p udp --dport 70000 -j ACCEPT");
    reversed_port_range => rule("-A INPUT -p udp --dport 90:80 -j ACCEPT");
    bad_number => rule("-A INPUT -m length --length 1x -j ACCEPT");
    jump_to_missing_chain => rule("-A INPUT -j nowhere");
    goto_to_target => rule("-A INPUT -g ACCEPT");
    jump_to_builtin => rule("-A INPUT -j OUTPUT");
    notrack_outside_raw => rule("-A INPUT -j NOTRACK");
    ct_outside_raw => "*mangle\n-A PREROUTING -j CT --notrack\nCOMMIT\n";
    ct_helper_without_protocol => "*raw\n-A PREROUTING -j CT --helper ftp\nCOMMIT\n";
    reject_outside_filter => "*mangle\n-A INPUT -j REJECT\nCOMMIT\n";
    tcp_reset_without_tcp => rule("-A INPUT -p udp -j REJECT --reject-with tcp-reset");
    policy_on_user_chain => "*filter\n:mine ACCEPT [0:0]\nCOMMIT\n";
    bad_policy => "*filter\n:INPUT REJECT [0:0]\nCOMMIT\n";
    rule_for_undeclared_chain => rule("-A later -j ACCEPT");
    duplicate_chain => "*filter\n:a - [0:0]\n:a - [0:0]\nCOMMIT\n";
    duplicate_table => "*filter\nCOMMIT\n*filter\nCOMMIT\n";
    loop_in_chains => "*filter\n:a - [0:0]\n:b - [0:0]\n-A a -j b\n-A b -p tcp -g a\nCOMMIT\n";
    intrapositioned_negation => rule("-A INPUT -s ! 1.2.3.4 -j DROP");
    negation_not_allowed => rule("-A INPUT -m comment ! --comment x");
    ambiguous_option => rule("-A INPUT -p tcp --s 1");
    tcp_match_needs_protocol => rule("-A INPUT -m tcp --dport 1");
    multiport_needs_protocol => rule("-A INPUT -m multiport --dports 1,2");
    too_many_ports => rule("-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16");
    unterminated_quote => rule("-A INPUT -m comment --comment \"oops -j ACCEPT");
    input_interface_on_output => rule("-A OUTPUT -i eth0 -j ACCEPT");
    never_matching_protocol => rule("-A INPUT ! -p all -j DROP");
    limit_overflow => rule("-A INPUT -m limit --limit 3/day -j ACCEPT");
    addrtype_iface_in_on_output => rule("-A u -m addrtype --src-type LOCAL --limit-iface-in\n-A OUTPUT -j u");
    mark_target_without_operation => "*mangle\n-A PREROUTING -j MARK\nCOMMIT\n";
    unknown_icmp_type => rule("-A INPUT -p icmp --icmp-type echo -j ACCEPT");
    unknown_tcp_flag => rule("-A INPUT -p tcp --tcp-flags SYN,ECE SYN -j ACCEPT");
    unknown_ctstate => rule("-A INPUT -m conntrack --ctstate NEW,BOGUS -j ACCEPT");
    line_outside_table => "-A INPUT -j ACCEPT\n";
    bad_rule_counters => rule("[1:x] -A INPUT -j ACCEPT");
    ct_unknown_helper => "*raw\n-A PREROUTING -p tcp --dport 21 -j CT --helper nosuch\nCOMMIT\n";
    ct_helper_for_another_protocol => "*raw\n-A PREROUTING -p udp --dport 21 -j CT --helper ftp\nCOMMIT\n";
    ct_helper_wrong_case => "*raw\n-A OUTPUT -p tcp -j CT --helper FTP\nCOMMIT\n";
    ct_helper_protocol_without_helpers => "*raw\n-A PREROUTING -p sctp -j CT --helper sip\nCOMMIT\n";
    ct_helper_with_negated_protocol => "*raw\n-A PREROUTING ! -p tcp -j CT --helper ftp\nCOMMIT\n";
    helper_match_without_helper => rule("-A INPUT -m helper -j ACCEPT");
    helper_match_twice => rule("-A INPUT -m helper --helper ftp --helper irc -j ACCEPT");
    helper_match_abbreviation_is_ambiguous => rule("-A INPUT -m helper --hel ftp -j ACCEPT");
}

macro_rules! golden6 {
    ($($name:ident => $text:expr;)*) => {$(
        #[test]
        fn $name() {
            insta::assert_snapshot!(stringify!($name), report6(&$text));
        }
    )*};
}

// ip6tables rulesets (`rules::Family::V6`).
golden6! {
    v6_fragment_option => rule("-A INPUT -f -j ACCEPT");
    v6_fragment_long_option => rule("-A INPUT --fragment -j ACCEPT");
    v6_ipv4_address => rule("-A INPUT -s 192.0.2.1 -j ACCEPT");
    v6_zone_index => rule("-A INPUT -s fe80::1%eth0 -j ACCEPT");
    v6_bad_mask => rule("-A INPUT -s 2001:db8::/129 -j ACCEPT");
    v6_dotted_mask => rule("-A INPUT -d 2001:db8::/64.0 -j ACCEPT");
    v6_icmp_type_option => rule("-A INPUT -p icmp --icmp-type 8 -j ACCEPT");
    v6_ttl_match => rule("-A INPUT -m ttl --ttl-eq 3 -j ACCEPT");
    v6_icmp_match => rule("-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT");
    v6_ambiguous_icmpv6_type => rule("-A INPUT -p ipv6-icmp --icmpv6-type echo -j ACCEPT");
    v6_unknown_icmpv6_type => rule("-A INPUT -p ipv6-icmp --icmpv6-type any -j ACCEPT");
    v6_bad_icmpv6_code => rule("-A INPUT -p ipv6-icmp --icmpv6-type 1/300 -j ACCEPT");
    v6_icmp6_needs_protocol => rule("-A INPUT -m icmp6 --icmpv6-type 1 -j ACCEPT");
    v6_tcp_reset_without_tcp => rule("-A INPUT -p all -j REJECT --reject-with tcp-reset");
    v6_ipv4_reject_type => rule("-A INPUT -j REJECT --reject-with icmp-port-unreachable");
    v6_addrtype_broadcast => rule("-A INPUT -m addrtype --dst-type BROADCAST -j DROP");
    v6_addrtype_blackhole => rule("-A INPUT -m addrtype --src-type LOCAL,BLACKHOLE -j DROP");
    v6_addrtype_prohibit => rule("-A INPUT -m addrtype --src-type THROW -j DROP");
    v6_unknown_ipv6_header => rule("-A INPUT -m ipv6header --header hop,tcp -j DROP");
    v6_ipv6header_case => rule("-A INPUT -m ipv6header --header HOP -j DROP");
    v6_ipv6header_without_header => rule("-A INPUT -m ipv6header --soft -j DROP");
    v6_frag_more_and_last => rule("-A INPUT -m frag --fragmore --fraglast -j DROP");
    v6_bad_fragid => rule("-A INPUT -m frag --fragid abc -j DROP");
    v6_hl_two_options => rule("-A INPUT -m hl --hl-eq 1 --hl-lt 3 -j DROP");
    v6_hl_lt_negated => rule("-A INPUT -m hl ! --hl-lt 3 -j DROP");
    v6_conntrack_ipv4_address => rule("-A INPUT -m conntrack --ctorigsrc 192.0.2.1 -j ACCEPT");
    v6_iprange_ipv4 => rule("-A INPUT -m iprange --src-range 192.0.2.1-192.0.2.9 -j ACCEPT");
    v6_ct_helper_with_protocol_all => "*raw\n-A PREROUTING -p all -j CT --helper ftp\nCOMMIT\n";
    v6_ct_irc_helper => "*raw\n-A PREROUTING -p tcp --dport 6667 -j CT --helper irc\nCOMMIT\n";
    v6_ct_netbios_helper => "*raw\n-A PREROUTING -p udp -j CT --helper netbios-ns\nCOMMIT\n";
}

// IPv6 material in an iptables (IPv4) ruleset.
golden! {
    v4_ipv6_address => rule("-A INPUT -s 2001:db8::1 -j ACCEPT");
    v4_hl_match => rule("-A INPUT -m hl --hl-eq 3 -j ACCEPT");
    v4_icmpv6_type_option => rule("-A INPUT -p ipv6-icmp --icmpv6-type 128 -j ACCEPT");
}
