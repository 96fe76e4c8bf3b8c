/*
 * The C test program of the eBPF policy tests (built -static: no dynamic C library, so no
 * preload could reach it). Prints, for each socket, what the calls returned and what getsockopt
 * reads back.
 *
 *   sock connect ADDR PORT [bind=ADDR] [pre=L:N:V]... [post=L:N:V]...
 *       one client socket; pre= options are set before connect(), post= after it.
 *   sock serve ADDR PORT COUNT [pre=L:N:V]... [post=L:N:V]...
 *       a listener (pre= set on it before listen()); prints "listening", then accepts COUNT
 *       connections with accept4() and sets post= on each (a Redis-like server: Redis sets
 *       30/10/3 right after accept4 on every inbound cluster-bus link).
 *
 * Each socket is one line:
 *   role=client peer=127.0.0.1:43001 calls=0,-22 keepalive=1 idle=2 intvl=1 cnt=3 uto=3000
 * where calls lists each setsockopt's result (0, or minus its errno) in order.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct call { int level, name, value; };

static int parse_address(const char *text, int port, struct sockaddr_storage *out, socklen_t *len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)out;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;

	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		*len = sizeof(*in4);
		return AF_INET;
	}
	if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof(*in6);
		return AF_INET6;
	}
	fprintf(stderr, "bad address %s\n", text);
	exit(2);
}

static void show_address(const struct sockaddr_storage *address, char *out, size_t size)
{
	char text[INET6_ADDRSTRLEN] = "?";

	if (address->ss_family == AF_INET) {
		const struct sockaddr_in *in4 = (const void *)address;
		inet_ntop(AF_INET, &in4->sin_addr, text, sizeof(text));
		snprintf(out, size, "%s:%d", text, ntohs(in4->sin_port));
	} else {
		const struct sockaddr_in6 *in6 = (const void *)address;
		inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
		snprintf(out, size, "[%s]:%d", text, ntohs(in6->sin6_port));
	}
}

static int get(int fd, int level, int name)
{
	int value = -1;
	socklen_t len = sizeof(value);

	if (getsockopt(fd, level, name, &value, &len) != 0)
		return -1;
	return value;
}

static void apply(int fd, const struct call *calls, int count, char *results, size_t size)
{
	size_t used = 0;

	results[0] = '\0';
	for (int i = 0; i < count; i++) {
		int value = calls[i].value;
		int ret = setsockopt(fd, calls[i].level, calls[i].name, &value, sizeof(value));
		used += snprintf(results + used, size - used, "%s%d", i ? "," : "",
				 ret == 0 ? 0 : -errno);
	}
	if (!count)
		snprintf(results, size, "-");
}

static void report(const char *role, int fd, const char *calls)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);
	char text[128] = "-";

	if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0)
		show_address(&peer, text, sizeof(text));
	printf("role=%s peer=%s calls=%s keepalive=%d idle=%d intvl=%d cnt=%d uto=%d\n", role, text,
	       calls, get(fd, SOL_SOCKET, SO_KEEPALIVE), get(fd, IPPROTO_TCP, TCP_KEEPIDLE),
	       get(fd, IPPROTO_TCP, TCP_KEEPINTVL), get(fd, IPPROTO_TCP, TCP_KEEPCNT),
	       get(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
	fflush(stdout);
}

static int parse_calls(int argc, char **argv, int from, const char *prefix, struct call *calls)
{
	int count = 0;
	size_t plen = strlen(prefix);

	for (int i = from; i < argc && count < 16; i++) {
		if (strncmp(argv[i], prefix, plen) == 0 &&
		    sscanf(argv[i] + plen, "%d:%d:%d", &calls[count].level, &calls[count].name,
			   &calls[count].value) == 3)
			count++;
	}
	return count;
}

static const char *option(int argc, char **argv, int from, const char *prefix)
{
	for (int i = from; i < argc; i++)
		if (strncmp(argv[i], prefix, strlen(prefix)) == 0)
			return argv[i] + strlen(prefix);
	return NULL;
}

int main(int argc, char **argv)
{
	struct call pre[16], post[16];
	char pre_results[256], post_results[256], all[520];
	struct sockaddr_storage address;
	socklen_t len;

	if (argc < 4) {
		fprintf(stderr, "usage: sock connect|serve ADDR PORT ...\n");
		return 2;
	}
	int family = parse_address(argv[2], atoi(argv[3]), &address, &len);
	int from = strcmp(argv[1], "serve") == 0 ? 5 : 4;
	int npre = parse_calls(argc, argv, from, "pre=", pre);
	int npost = parse_calls(argc, argv, from, "post=", post);
	int fd = socket(family, SOCK_STREAM, 0);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	if (strcmp(argv[1], "connect") == 0) {
		const char *bind_to = option(argc, argv, from, "bind=");
		if (bind_to) {
			struct sockaddr_storage local;
			socklen_t local_len;
			parse_address(bind_to, 0, &local, &local_len);
			if (bind(fd, (struct sockaddr *)&local, local_len) != 0) {
				perror("bind");
				return 1;
			}
		}
		apply(fd, pre, npre, pre_results, sizeof(pre_results));
		if (connect(fd, (struct sockaddr *)&address, len) != 0) {
			perror("connect");
			return 1;
		}
		apply(fd, post, npost, post_results, sizeof(post_results));
		snprintf(all, sizeof(all), "%s/%s", pre_results, post_results);
		report("client", fd, all);
		return 0;
	}
	int one = 1, count = atoi(argv[4]);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&address, len) != 0) {
		perror("bind");
		return 1;
	}
	apply(fd, pre, npre, pre_results, sizeof(pre_results));
	if (listen(fd, 64) != 0) {
		perror("listen");
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	for (int i = 0; i < count; i++) {
		int client = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (client < 0) {
			perror("accept4");
			return 1;
		}
		apply(client, post, npost, post_results, sizeof(post_results));
		snprintf(all, sizeof(all), "%s/%s", pre_results, post_results);
		report("accepted", client, all);
		close(client);
	}
	report("listener", fd, pre_results);
	return 0;
}
