/*
 * Edge cases of setsockopt for the eBPF policy's differential tests (cli/tests/bpf_edges.rs):
 * the same calls run inside a cgroup with the policy and outside any, and every line must match
 * (return value and errno always; the values read back too under override=no).
 *
 *   edge PORT
 *
 * listens on 127.0.0.1:PORT and [::1]:PORT+1 itself, then for each case makes a fresh socket of
 * a kind (tcp4, tcp6, fresh, listen, shut, udp, unix, mptcp), connects it where that is its
 * kind, sets the five options to a baseline the program chose (so sock_ops' values never show
 * under override=no), makes the one call of the case and prints
 *
 *   case=tcp4/9/len3/v5/buf ret=-22 keepalive=1 idle=100 intvl=10 cnt=4 uto=5000
 *
 * ret is 0 or minus the errno; values that cannot be read are -errno too.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

static int port;
static int listener4, listener6;
static long page;
static char *tail_page; /* two pages, the second unmapped */
static char *unmapped;  /* one page, unmapped */
static char big[3 * 4096];

static int get(int fd, int level, int name)
{
	int value = -1;
	socklen_t len = sizeof(value);

	if (getsockopt(fd, level, name, &value, &len) != 0)
		return -errno;
	return value;
}

static int set(int fd, int level, int name, int value)
{
	return setsockopt(fd, level, name, &value, sizeof(value)) == 0 ? 0 : -errno;
}

static void drain(int listener)
{
	for (;;) {
		int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		close(fd);
	}
}

static int connect_to(int fd, int family)
{
	struct sockaddr_in in4 = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons(port + 1) };

	in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	in6.sin6_addr = in6addr_loopback;
	if (family == AF_INET)
		return connect(fd, (struct sockaddr *)&in4, sizeof(in4));
	return connect(fd, (struct sockaddr *)&in6, sizeof(in6));
}

/* A fresh socket of a kind, in the state its name says; -1 when the kind is unavailable. */
static int make(const char *kind)
{
	int fd = -1;

	if (!strcmp(kind, "tcp4") || !strcmp(kind, "fresh") || !strcmp(kind, "shut"))
		fd = socket(AF_INET, SOCK_STREAM, 0);
	else if (!strcmp(kind, "tcp6"))
		fd = socket(AF_INET6, SOCK_STREAM, 0);
	else if (!strcmp(kind, "listen")) {
		struct sockaddr_in in4 = { .sin_family = AF_INET };

		in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (bind(fd, (struct sockaddr *)&in4, sizeof(in4)) || listen(fd, 4))
			return -1;
		return fd;
	} else if (!strcmp(kind, "udp"))
		fd = socket(AF_INET, SOCK_DGRAM, 0);
	else if (!strcmp(kind, "unix"))
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
	else if (!strcmp(kind, "mptcp")) {
		fd = socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP);
		if (fd < 0)
			return -1;
	}
	if (fd < 0)
		return -1;
	if (!strcmp(kind, "tcp4") || !strcmp(kind, "shut") || !strcmp(kind, "mptcp")) {
		if (connect_to(fd, AF_INET))
			return -1;
	} else if (!strcmp(kind, "tcp6")) {
		if (connect_to(fd, AF_INET6))
			return -1;
	}
	if (!strcmp(kind, "shut")) {
		/* both directions shut and the peer gone: the socket ends in CLOSE */
		shutdown(fd, SHUT_RDWR);
		usleep(20000);
		drain(listener4);
		usleep(20000);
	}
	drain(listener4);
	drain(listener6);
	return fd;
}

static const char *kinds[] = { "tcp4", "tcp6", "fresh", "listen", "shut", "udp", "unix", "mptcp" };

static const struct {
	int level, name;
} options[] = {
	{ SOL_SOCKET, SO_KEEPALIVE },  { IPPROTO_TCP, TCP_KEEPIDLE },   { IPPROTO_TCP, TCP_KEEPINTVL },
	{ IPPROTO_TCP, TCP_KEEPCNT }, { IPPROTO_TCP, TCP_USER_TIMEOUT },
};

static const int baseline[] = { 1, 100, 10, 4, 5000 };

static void report(const char *kind, int fd, const char *what, int ret)
{
	printf("case=%s/%s ret=%d keepalive=%d idle=%d intvl=%d cnt=%d uto=%d\n", kind, what, ret,
	       get(fd, SOL_SOCKET, SO_KEEPALIVE), get(fd, IPPROTO_TCP, TCP_KEEPIDLE),
	       get(fd, IPPROTO_TCP, TCP_KEEPINTVL), get(fd, IPPROTO_TCP, TCP_KEEPCNT),
	       get(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
}

/* One call on a fresh socket of `kind`: option o, length len, value v, pointer kind. */
static void one(const char *kind, int o, int len, int v, const char *pointer)
{
	char what[96];
	void *optval;
	int fd = make(kind), ret;

	snprintf(what, sizeof(what), "%d:%d/len%d/v%d/%s", options[o].level, options[o].name, len,
		 v, pointer);
	if (fd < 0) {
		printf("case=%s/%s unavailable\n", kind, what);
		return;
	}
	for (int i = 0; i < 5; i++)
		set(fd, options[i].level, options[i].name, baseline[i]);
	memset(big, 0, sizeof(big));
	memcpy(big, &v, sizeof(v));
	if (!strcmp(pointer, "buf"))
		optval = big;
	else if (!strcmp(pointer, "null"))
		optval = NULL;
	else if (!strcmp(pointer, "unmapped"))
		optval = unmapped;
	else { /* "tail": the int in the last 4 bytes of a page, the next page unmapped */
		optval = tail_page + page - sizeof(int);
		memcpy(optval, &v, sizeof(v));
	}
	ret = setsockopt(fd, options[o].level, options[o].name, optval, len) == 0 ? 0 : -errno;
	report(kind, fd, what, ret);
	close(fd);
}

static int open_listener(int family)
{
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
	struct sockaddr_in in4 = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons(port + 1) };

	in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	in6.sin6_addr = in6addr_loopback;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if ((family == AF_INET ? bind(fd, (struct sockaddr *)&in4, sizeof(in4))
			       : bind(fd, (struct sockaddr *)&in6, sizeof(in6))) ||
	    listen(fd, 512)) {
		perror("listen");
		exit(1);
	}
	return fd;
}

int main(int argc, char **argv)
{
	static const int lengths[] = { 0, 1, 2, 3, 4, 8, 64, 4096, 5000 };
	static const int values[] = { 5, 0, 1, 2, -1, 32768, 128, 2147483647, -2147483648 };
	const char *only = argc > 2 ? argv[2] : NULL;
	static const struct {
		int level, name;
	} foreign[] = { { SOL_SOCKET, SO_REUSEADDR }, { IPPROTO_TCP, TCP_NODELAY } };

	if (argc < 2) {
		fprintf(stderr, "usage: edge PORT [KIND]\n");
		return 2;
	}
	port = atoi(argv[1]);
	page = sysconf(_SC_PAGESIZE);
	listener4 = open_listener(AF_INET);
	listener6 = open_listener(AF_INET6);
	tail_page = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(tail_page + page, page);
	unmapped = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(unmapped, page);
	if (only && !strcmp(only, "mptcp-untouched")) {
		/* An MPTCP socket the program configures nothing on, connected to a plain TCP
		 * listener (MPTCP falls back to TCP): what it reads back. */
		int fd = socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP);

		if (fd < 0 || connect_to(fd, AF_INET)) {
			printf("case=mptcp-untouched unavailable\n");
			return 0;
		}
		usleep(20000);
		report("mptcp-untouched", fd, "none", 0);
		return 0;
	}
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		if (only && strcmp(only, kinds[k]))
			continue;
		for (int o = 0; o < 5; o++) {
			/* every length with a valid value, and with 0 (SO_KEEPALIVE off) */
			for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
				one(kinds[k], o, lengths[l], 5, "buf");
				one(kinds[k], o, lengths[l], 0, "buf");
			}
			/* every value at a proper length */
			for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++)
				one(kinds[k], o, sizeof(int), values[v], "buf");
			/* pointers */
			one(kinds[k], o, 0, 0, "null");
			one(kinds[k], o, 4, 0, "null");
			one(kinds[k], o, 4, 0, "unmapped");
			one(kinds[k], o, 4, 7, "tail");
			one(kinds[k], o, 8, 7, "tail");
			one(kinds[k], o, 5000, 7, "tail");
		}
		/* options that are not ours: the policy has nothing to say about them */
		for (int f = 0; f < 2; f++) {
			int fd = make(kinds[k]), v = 1, ret;
			char what[64];

			if (fd < 0)
				continue;
			snprintf(what, sizeof(what), "%d:%d/len8/v1/tail", foreign[f].level,
				 foreign[f].name);
			memcpy(tail_page + page - sizeof(int), &v, sizeof(v));
			ret = setsockopt(fd, foreign[f].level, foreign[f].name,
					 tail_page + page - sizeof(int), 8) == 0 ? 0 : -errno;
			report(kinds[k], fd, what, ret);
			close(fd);
		}
	}
	return 0;
}
