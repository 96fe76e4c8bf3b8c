/*
 * setsockopt loop for bpf/bench: N calls of setsockopt(LEVEL, NAME, VALUE) on one connected
 * TCP socket (to a listener of its own on 127.0.0.1:PORT), timed in CPU and wall time.
 *
 *   bench-setsockopt N LEVEL NAME VALUE PORT
 * prints: ns_per_iteration=… cpu_ns_per_iteration=…
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(clockid_t clock)
{
	struct timespec t;

	clock_gettime(clock, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: bench-setsockopt N LEVEL NAME VALUE PORT\n");
		return 2;
	}
	long n = atol(argv[1]);
	int level = atoi(argv[2]), name = atoi(argv[3]), value = atoi(argv[4]), one = 1;
	struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[5])) };
	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int listener = socket(AF_INET, SOCK_STREAM, 0), fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(listener, (void *)&address, sizeof(address)) || listen(listener, 1) ||
	    connect(fd, (void *)&address, sizeof(address))) {
		perror("setup");
		return 1;
	}
	for (long i = 0; i < n / 10; i++)
		setsockopt(fd, level, name, &value, sizeof(value));
	double wall = now(CLOCK_MONOTONIC), cpu = now(CLOCK_PROCESS_CPUTIME_ID);
	for (long i = 0; i < n; i++)
		if (setsockopt(fd, level, name, &value, sizeof(value)) != 0) {
			perror("setsockopt");
			return 1;
		}
	cpu = now(CLOCK_PROCESS_CPUTIME_ID) - cpu;
	wall = now(CLOCK_MONOTONIC) - wall;
	printf("ns_per_iteration=%.1f cpu_ns_per_iteration=%.1f\n", wall / n, cpu / n);
	return 0;
}
