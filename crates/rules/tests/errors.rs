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

// Every other refusal of the parser (issue 7): structure, options, values, targets.
golden! {
    table_name_trailing_text => "*filter extra\nCOMMIT\n";
    missing_table_name => "*\nCOMMIT\n";
    commit_trailing_text => "*filter\nCOMMIT now\n";
    empty_chain_line => "*filter\n:\nCOMMIT\n";
    chain_without_policy => "*filter\n:INPUT\nCOMMIT\n";
    bad_chain_counters => "*filter\n:INPUT ACCEPT [x:0]\nCOMMIT\n";
    chain_counters_trailing_text => "*filter\n:INPUT ACCEPT [0:0] extra\nCOMMIT\n";
    chain_name_too_long => "*filter\n:abcdefghijklmnopqrstuvwxyz0123 - [0:0]\nCOMMIT\n";
    chain_name_starting_with_dash => "*filter\n:-x - [0:0]\nCOMMIT\n";
    chain_named_like_a_target => "*filter\n:ACCEPT - [0:0]\nCOMMIT\n";
    double_negation => rule("-A INPUT ! ! -s 1.2.3.4 -j DROP");
    trailing_negation => rule("-A INPUT -j DROP !");
    insert_command => rule("-I INPUT -j ACCEPT");
    new_chain_command => rule("-N other");
    short_flag_with_inline_argument => rule("-A INPUT -fx -j DROP");
    long_flag_with_inline_argument => rule("-A INPUT -p tcp --syn=1 -j DROP");
    two_appends => rule("-A INPUT -A OUTPUT -j DROP");
    two_targets => rule("-A INPUT -j ACCEPT -j DROP");
    source_given_twice => rule("-A INPUT -s 1.1.1.1 -s 2.2.2.2 -j DROP");
    tcp_flags_one_argument => rule("-A INPUT -p tcp --tcp-flags SYN");
    rule_without_append => rule("-s 1.2.3.4 -j DROP");
    bare_word => rule("-A INPUT foo -j DROP");
    lone_dash => rule("-A INPUT - -j DROP");
    source_without_argument => rule("-A INPUT -s");
    unknown_protocol => rule("-A INPUT -p bogus -j DROP");
    protocol_number_too_big => rule("-A INPUT -p 256 -j DROP");
    interface_name_too_long => rule("-A INPUT -i abcdefghijklmnopq -j DROP");
    multiple_addresses => rule("-A INPUT -s 1.2.3.4,5.6.7.8 -j DROP");
    bad_dotted_mask => rule("-A INPUT -s 10.0.0.0/255.0.x.0 -j DROP");
    bad_mark_value => rule("-A INPUT -m mark --mark 0xfffffffff -j DROP");
    bad_mark_mask => rule("-A INPUT -m mark --mark 1/zz -j DROP");
    bad_tcp_option_number => rule("-A INPUT -p tcp --tcp-option 0 -j DROP");
    bad_icmp_type_number => rule("-A INPUT -p icmp --icmp-type 300 -j DROP");
    bad_icmp_code => rule("-A INPUT -p icmp --icmp-type 3/300 -j DROP");
    bad_ctdir => rule("-A INPUT -m conntrack --ctdir SIDEWAYS -j DROP");
    bad_ctproto => rule("-A INPUT -m conntrack --ctproto bogus -j DROP");
    bad_ctstatus => rule("-A INPUT -m conntrack --ctstatus BOGUS -j DROP");
    bad_ctexpire => rule("-A INPUT -m conntrack --ctexpire 5:x -j DROP");
    bad_ctorigsrcport => rule("-A INPUT -m conntrack --ctorigsrcport 70000 -j DROP");
    conntrack_without_option => rule("-A INPUT -m conntrack -j DROP");
    state_without_option => rule("-A INPUT -m state -j DROP");
    bad_ttl_value => rule("-A INPUT -m ttl --ttl-eq 300 -j DROP");
    ttl_two_options => rule("-A INPUT -m ttl --ttl-eq 3 --ttl-gt 5 -j DROP");
    bad_limit_burst => rule("-A INPUT -m limit --limit-burst 20000 -j DROP");
    bad_limit_unit => rule("-A INPUT -m limit --limit 3/fortnight -j ACCEPT");
    zero_limit_rate => rule("-A INPUT -m limit --limit 0/sec -j ACCEPT");
    limit_rate_too_fast => rule("-A INPUT -m limit --limit 100000000/sec -j ACCEPT");
    bad_pkttype => rule("-A INPUT -m pkttype --pkt-type sideways -j DROP");
    pkttype_without_option => rule("-A INPUT -m pkttype -j DROP");
    length_too_big => rule("-A INPUT -m length --length 70000 -j DROP");
    bad_tcp_flags_mask => rule("-A INPUT -p tcp --tcp-flags BOGUS SYN -j DROP");
    bad_addrtype => rule("-A INPUT -m addrtype --src-type BOGUS -j DROP");
    addrtype_both_iface_limits => rule("-A INPUT -m addrtype --src-type LOCAL --limit-iface-in --limit-iface-out -j DROP");
    multiport_empty_list => rule("-A INPUT -p tcp -m multiport --dports , -j DROP");
    multiport_two_lists => rule("-A INPUT -p tcp -m multiport --dports 1 --sports 2 -j DROP");
    multiport_without_list => rule("-A INPUT -p tcp -m multiport -j DROP");
    iprange_without_range => rule("-A INPUT -m iprange -j DROP");
    bad_connmark => rule("-A INPUT -m connmark --mark x -j DROP");
    queue_target => rule("-A INPUT -j QUEUE");
    bad_log_level => rule("-A INPUT -j LOG --log-level loud");
    unknown_target_option => rule("-A INPUT -j LOG --bogus 1");
    bad_ct_zone => "*raw\n-A PREROUTING -j CT --zone 70000\nCOMMIT\n";
    mark_target_two_operations => "*mangle\n-A PREROUTING -j MARK --set-mark 1 --and-mark 2\nCOMMIT\n";
    bad_mark_target_value => "*mangle\n-A PREROUTING -j MARK --set-mark x\nCOMMIT\n";
    connmark_target_without_operation => "*mangle\n-A PREROUTING -j CONNMARK\nCOMMIT\n";
    unknown_reject_type => rule("-A INPUT -j REJECT --reject-with icmp-bogus");
    bad_port_range_part => rule("-A INPUT -p tcp --dport 1:x -j ACCEPT");
    service_name_unknown => rule("-A INPUT -p tcp --dport nosuchservice -j ACCEPT");
}

golden6! {
    v6_bad_hl_value => rule("-A INPUT -m hl --hl-eq 300 -j DROP");
    v6_ipv6header_empty_list => rule("-A INPUT -m ipv6header --header , -j DROP");
    v6_multiple_addresses => rule("-A INPUT -s 2001:db8::1,2001:db8::2 -j DROP");
    v6_host_name => rule("-A INPUT -d example.com -j DROP");
    v6_bad_fraglen => rule("-A INPUT -m frag --fraglen x -j DROP");
}

/// Every golden input above gives an error with a position inside the text and a hint.
#[test]
fn every_error_has_a_position_and_a_hint() {
    let src = include_str!("errors.rs");
    let mut n = 0;
    for snap in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots")).unwrap() {
        let text = std::fs::read_to_string(snap.unwrap().path()).unwrap();
        if !text.contains("source: crates/rules/tests/errors.rs") {
            continue;
        }
        n += 1;
        assert!(text.contains("; hint: "), "no hint:\n{text}");
        assert!(text.contains("kind=") && text.contains(" line=") && text.contains(" column="), "{text}");
    }
    assert!(n >= 150, "{n} golden errors");
    assert!(src.contains("golden!"));
}
