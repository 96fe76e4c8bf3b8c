/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The layout shared by the BPF programs (keepalive.bpf.c) and their loader
 * (cli/src/bpf/layout.rs mirrors it with #[repr(C)]; its tests compare the sizes build.rs
 * measures here). Only the shape of the data: every value comes from keepalive-config.
 */
#ifndef KEEPALIVE_BPF_H
#define KEEPALIVE_BPF_H

#include <linux/types.h>

#define KP_OPTIONS 5
#define KP_PORT_WORDS 1024

/* Override */
#define KP_OVERRIDE_NO 0
#define KP_OVERRIDE_YES 1
#define KP_OVERRIDE_TIGHTEN 2

/* The shape of SocketOption::tighter for one option, derived by the loader from it. */
#define KP_TIGHTER_MIN 0
#define KP_TIGHTER_EITHER_ON 1
#define KP_TIGHTER_ZERO_IS_NEVER 2

/* Role (keepalive_config::Role) */
#define KP_ROLE_LISTENING 1
#define KP_ROLE_CONNECTING 2
#define KP_ROLE_ACCEPTED 3

/* Decision (keepalive_config::Decision); 0 is "not judged yet" */
#define KP_TARGETED 1
#define KP_PORT_EXCLUDED 2
#define KP_PEER_EXCLUDED 3
#define KP_EACH_PEER 4

/* kp_counters */
#define KP_COUNT_ACTIVE 0
#define KP_COUNT_PASSIVE 1
#define KP_COUNT_LISTENING 2
#define KP_COUNT_EXCLUDED 3
#define KP_COUNT_REPLACED 4
#define KP_COUNT_KEPT 5
#define KP_COUNT_ERRORS 6
#define KP_COUNTERS 7

struct kp_option {
	__s32 level;
	__s32 name;
	__s32 min;
	__s32 max;
	__s32 value;
	__u32 tighter;
	__u32 configured;
};

struct kp_policy {
	__u32 enabled;
	__u32 override;
	__u32 has_ports;
	__u32 has_nets;
	struct kp_option options[KP_OPTIONS];
	/* The option whose value on an accepted socket tells that its listener was configured
	 * (the kernel copied the listener's options at accept), or -1: see the loader. */
	__s32 witness;
};

/* LPM trie key: an IPv6 (or IPv4-mapped) address, network byte order. */
struct kp_net_key {
	__u32 prefixlen;
	__u32 addr[4];
};

/* Per socket (sk_storage): what the program set itself, and the judgement. */
struct kp_sock {
	__u32 asked_mask;
	__u32 judged;
	__u32 role;
	__s32 asked[KP_OPTIONS];
};

#endif
