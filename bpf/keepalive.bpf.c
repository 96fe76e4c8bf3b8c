// SPDX-License-Identifier: MIT OR Apache-2.0
//
// keepalive-preload's policy enforced by the kernel on a cgroup: the programs `keepalive-preload
// bpf attach` loads and attaches (cli/src/bpf/). Built by cli/build.rs with Debian's clang and
// embedded in the command.
//
// This file defines no option, bound or filter: the loader fills `kp_policy` from the one
// definition in keepalive-config (levels, names, kernel bounds, configured values, the override
// policy) and `kp_ports`/`kp_nets` from KEEPALIVE_PORTS/KEEPALIVE_NETS. What lives here is the
// enforcement of two rules, each mirrored on keepalive-config and compared with it by the tests
// (cli/tests/bpf_parity.rs):
//   - Override::replace / SocketOption::tighter  -> replace() and tighter() below;
//   - Targeting::decide (Connecting, Accepted, Listening) -> decide() below.
//
// Two programs:
//   kp_sockops     (sock_ops): when a connection is made (TCP_CONNECT, PASSIVE_ESTABLISHED) or
//                  a socket listens (TCP_LISTEN), judges it and sets the
//                  configured options with bpf_setsockopt. Options the program set itself before
//                  (remembered in kp_storage, cloned from a listener into its accepted sockets)
//                  follow the override policy instead.
//   kp_setsockopt  (cgroup/setsockopt): the program's own setsockopt of one of the configured
//                  options on a TCP socket. A value the kernel rejects passes through untouched
//                  (the call fails exactly as without the policy); a valid one is remembered and,
//                  on a targeted socket, replaced as the override policy says. The program sets
//                  the resulting value itself (bpf_setsockopt, under the socket lock the hook
//                  holds) and tells the kernel to skip its own handler: what costs is the hook
//                  (copy, lock), not a second pass through the kernel with a kmalloc'd buffer.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "keepalive.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
/* The kernel hands a cgroup/setsockopt program at most one page of the value. */
#define SOCKOPT_PAGE 4096

/* Maps: created by the loader, which finds them by these symbol names. */
struct kp_policy kp_policy_map SEC("kp_maps");   /* array, 1 entry */
__u64 kp_ports SEC("kp_maps");                  /* array, KP_PORT_WORDS entries: port bitmap */
__u32 kp_nets SEC("kp_maps");                   /* LPM trie: struct kp_net_key -> u32 */
struct kp_sock kp_storage SEC("kp_maps");        /* sk_storage, BPF_F_CLONE */
__u64 kp_counters SEC("kp_maps");               /* per-CPU array, KP_COUNTERS entries */

char _license[] SEC("license") = "Dual MIT/GPL";

static __always_inline struct kp_policy *policy(void)
{
	__u32 key = 0;
	struct kp_policy *p = bpf_map_lookup_elem(&kp_policy_map, &key);

	return p && p->enabled ? p : 0;
}

static __always_inline void count(__u32 which)
{
	__u64 *counter = bpf_map_lookup_elem(&kp_counters, &which);

	if (counter)
		*counter += 1;
}

/* SocketOption::tighter: the more aggressive of two accepted values. */
static __always_inline int tighter(__u32 rule, int a, int b)
{
	if (rule == KP_TIGHTER_EITHER_ON)
		return a != 0 || b != 0;
	if (rule == KP_TIGHTER_ZERO_IS_NEVER) {
		if (a == 0)
			return b;
		if (b == 0)
			return a;
	}
	return a < b ? a : b;
}

/* Override::replace: 1 and *chosen when the value the program asked for is to be replaced. */
static __always_inline int replace(__u32 override, __u32 rule, int asked, int configured,
				   int *chosen)
{
	int value;

	if (override == KP_OVERRIDE_YES)
		value = configured;
	else if (override == KP_OVERRIDE_TIGHTEN)
		value = tighter(rule, asked, configured);
	else
		return 0;
	if (value == asked)
		return 0;
	*chosen = value;
	return 1;
}

static __always_inline int port_listed(__u32 port)
{
	__u32 word = (port >> 6) & (KP_PORT_WORDS - 1);
	__u64 *bits = bpf_map_lookup_elem(&kp_ports, &word);

	return bits && ((*bits >> (port & 63)) & 1);
}

/* IPv4 as IPv4-mapped IPv6, like keepalive-config's NetRange. Words in network order. */
static __always_inline int net_listed(__u32 family, __u32 ip4, const __u32 ip6[4])
{
	struct kp_net_key key = { .prefixlen = 128 };

	if (family == AF_INET) {
		key.addr[2] = bpf_htonl(0xffff);
		key.addr[3] = ip4;
	} else {
		key.addr[0] = ip6[0];
		key.addr[1] = ip6[1];
		key.addr[2] = ip6[2];
		key.addr[3] = ip6[3];
	}
	return bpf_map_lookup_elem(&kp_nets, &key) != 0;
}

/* Targeting::decide for the roles the kernel tells apart. */
static __always_inline __u32 decide(const struct kp_policy *p, __u32 role, __u32 local_port,
				    __u32 remote_port, __u32 family, __u32 ip4,
				    const __u32 ip6[4])
{
	if (p->has_ports) {
		__u32 port = role == KP_ROLE_CONNECTING ? remote_port : local_port;

		if (!port_listed(port))
			return KP_PORT_EXCLUDED;
	}
	if (p->has_nets) {
		if (role == KP_ROLE_LISTENING)
			return KP_EACH_PEER;
		if (!net_listed(family, ip4, ip6))
			return KP_PEER_EXCLUDED;
	}
	return KP_TARGETED;
}

/* One configured option of a targeted socket, as the override policy says. */
static __always_inline void set_option(struct bpf_sock_ops *ctx, const struct kp_policy *p,
				       const struct kp_sock *seen, __u32 asked_mask, int i)
{
	const struct kp_option *option = &p->options[i];
	int value = option->value;

	if (!option->configured)
		return;
	if (seen && ((asked_mask >> i) & 1)) {
		/* Set by the program before we judged the socket (or on its listener). */
		if (!replace(p->override, option->tighter, seen->asked[i], option->value, &value)) {
			count(KP_COUNT_KEPT);
			return;
		}
	}
	if (bpf_setsockopt(ctx, option->level, option->name, &value, sizeof(value)))
		count(KP_COUNT_ERRORS);
}

/* An accepted socket that already holds what set_option() would give it: under `yes` and
 * `tighten` without filters its listener was judged and configured exactly so (at TCP_LISTEN,
 * and by kp_setsockopt since), and the kernel copied its options and keepalive timer at accept.
 * One read of the witness the loader chose tells (as the library's accept witness does). */
static __always_inline int inherited(struct bpf_sock_ops *ctx, const struct kp_policy *p)
{
	__s32 i = p->witness;
	const struct kp_option *option;
	int value;

	if (p->override == KP_OVERRIDE_NO || p->has_ports || p->has_nets || i < 0 ||
	    i >= KP_OPTIONS)
		return 0;
	option = &p->options[i];
	if (!option->configured ||
	    bpf_getsockopt(ctx, option->level, option->name, &value, sizeof(value)))
		return 0;
	return value == option->value;
}

SEC("sockops")
int kp_sockops(struct bpf_sock_ops *ctx)
{
	__u32 op = ctx->op, role, family, decision, filtered, asked_mask, ip4 = 0, ip6[4] = {};
	struct kp_policy *p;
	struct kp_sock *seen;
	struct bpf_sock *sk;

	switch (op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* Every active open, before its SYN (ACTIVE_ESTABLISHED would only repeat it). */
		role = KP_ROLE_CONNECTING;
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		role = KP_ROLE_ACCEPTED;
		break;
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		role = KP_ROLE_LISTENING;
		break;
	default:
		return 1;
	}
	family = ctx->family;
	if (family != AF_INET && family != AF_INET6)
		return 1;
	p = policy();
	sk = ctx->sk;
	if (!p || !sk)
		return 1;
	if (role == KP_ROLE_ACCEPTED && inherited(ctx, p)) {
		count(KP_COUNT_PASSIVE);
		return 1;
	}
	/* The socket's memory: what the program set before (made by kp_setsockopt, or cloned
	 * from the listener). Under a filter the judgement is kept there too, for the program's
	 * later setsockopt; without one every socket is targeted and nothing needs keeping, and
	 * under `yes` without one what the program asked for changes nothing: no look-up. */
	filtered = p->has_ports || p->has_nets;
	seen = 0;
	if (filtered || p->override != KP_OVERRIDE_YES)
		seen = bpf_sk_storage_get(&kp_storage, sk, 0,
					  filtered ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (filtered && !seen) {
		count(KP_COUNT_ERRORS);
		return 1;
	}
	if (!p->has_nets) {
		/* decide() reads no address */
	} else if (family == AF_INET) {
		ip4 = ctx->remote_ip4;
	} else {
		ip6[0] = ctx->remote_ip6[0];
		ip6[1] = ctx->remote_ip6[1];
		ip6[2] = ctx->remote_ip6[2];
		ip6[3] = ctx->remote_ip6[3];
	}
	decision = decide(p, role, ctx->local_port, bpf_ntohl(ctx->remote_port) & 0xffff, family,
			  ip4, ip6);
	if (seen) {
		seen->role = role;
		seen->judged = decision;
	}
	if (decision != KP_TARGETED) {
		if (role != KP_ROLE_LISTENING)
			count(KP_COUNT_EXCLUDED);
		return 1;
	}
	asked_mask = seen ? seen->asked_mask : 0;
	/* The timings first, the on/off switch (SO_KEEPALIVE) last: turned on, it arms the
	 * keepalive timer once with the timings in place; before it, TCP_KEEPIDLE would re-arm it. */
#pragma clang loop unroll(full)
	for (int pass = 0; pass < 2; pass++) {
#pragma clang loop unroll(full)
		for (int i = 0; i < KP_OPTIONS; i++)
			if ((p->options[i].tighter == KP_TIGHTER_EITHER_ON) == pass)
				set_option(ctx, p, seen, asked_mask, i);
	}
	count(role == KP_ROLE_CONNECTING ? KP_COUNT_ACTIVE :
	      role == KP_ROLE_ACCEPTED ? KP_COUNT_PASSIVE : KP_COUNT_LISTENING);
	return 1;
}

SEC("cgroup/setsockopt")
int kp_setsockopt(struct bpf_sockopt *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__s32 level = ctx->level, name = ctx->optname;
	void *optval = (void *)(long)ctx->optval;
	void *optval_end = (void *)(long)ctx->optval_end;
	struct kp_policy *p;
	struct kp_sock *seen;
	int index = -1, asked, value, targeted, replaced, remember;

	p = policy();
	if (!p || !sk)
		goto pass;
	/* The option first: most calls a program makes are of other options. */
#pragma clang loop unroll(full)
	for (int i = 0; i < KP_OPTIONS; i++) {
		if (p->options[i].configured && p->options[i].level == level &&
		    p->options[i].name == name)
			index = i;
	}
	/* Shorter than an int: the kernel says EINVAL, as without us. optval_end cannot tell:
	 * the kernel hands us max(16, optlen) bytes, zeroed past what it copied. */
	if (index < 0 || index >= KP_OPTIONS || ctx->optlen < (int)sizeof(int) ||
	    ctx->optlen > SOCKOPT_PAGE)
		goto pass;
	if ((sk->family != AF_INET && sk->family != AF_INET6) || sk->type != SOCK_STREAM ||
	    sk->protocol != IPPROTO_TCP)
		goto pass;
	if (optval + sizeof(int) > optval_end)
		goto pass; /* never with the length checked above; the verifier needs it */
	asked = *(int *)optval;
	if (asked < p->options[index].min || asked > p->options[index].max)
		goto pass; /* the kernel rejects it: the call fails exactly as without us */
	/* What the program asked for is remembered for kp_sockops, which follows the override
	 * policy for it at connect, listen or accept, and the judgement read back. Under `yes`
	 * without filters neither matters: every socket is targeted and kp_sockops sets the
	 * configured values whatever the program asked for. */
	remember = p->override != KP_OVERRIDE_YES || p->has_ports || p->has_nets;
	seen = remember ? bpf_sk_storage_get(&kp_storage, sk, 0, BPF_SK_STORAGE_GET_F_CREATE) : 0;
	if (seen) {
		seen->asked_mask |= 1u << index;
		seen->asked[index] = asked;
		if (seen->judged)
			targeted = seen->judged == KP_TARGETED;
		else
			/* Not judged yet: without filters every TCP socket is targeted from the
			 * start; with them the judgement (at connect, listen or accept) follows
			 * the policy for the value remembered here. */
			targeted = !p->has_ports && !p->has_nets;
	} else {
		if (remember)
			count(KP_COUNT_ERRORS);
		targeted = !p->has_ports && !p->has_nets;
	}
	value = asked;
	replaced = targeted && replace(p->override, p->options[index].tighter, asked,
				       p->options[index].value, &value);
	if (targeted)
		count(replaced ? KP_COUNT_REPLACED : KP_COUNT_KEPT);
	/* Set here, under the socket lock the hook already holds, through the kernel's own
	 * handler (do_tcp_setsockopt, sk_setsockopt), and the kernel's second pass skipped
	 * (optlen -1: the call returns 0): no kernel copy of the buffer, no second lock. */
	if (!bpf_setsockopt(sk, level, name, &value, sizeof(value))) {
		ctx->optlen = -1;
		return 1;
	}
	/* Refused here (it should not be): the kernel's handler decides, as without us. */
	if (replaced) {
		*(int *)optval = value;
		return 1; /* optlen unchanged: the kernel applies the buffer we rewrote */
	}
pass:
	/* 0: the kernel uses the program's own buffer and length, untouched. */
	ctx->optlen = 0;
	return 1;
}
