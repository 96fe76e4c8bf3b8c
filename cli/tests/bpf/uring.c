/*
 * An io_uring client for the eBPF policy tests: the socket is made and connected by the kernel
 * from the ring (IORING_OP_SOCKET, IORING_OP_CONNECT; Linux >= 5.19), never by socket(2) or
 * connect(2), which is what a preload would need to see. Prints what getsockopt reads back.
 *
 *   uring ADDR PORT    (IPv4)
 */
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int get(int fd, int level, int name)
{
	int value = -1;
	socklen_t len = sizeof(value);

	if (getsockopt(fd, level, name, &value, &len) != 0)
		return -1;
	return value;
}

static int run(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	int ret;

	io_uring_submit(ring);
	if (io_uring_wait_cqe(ring, &cqe) != 0)
		return -1;
	ret = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return ret;
}

int main(int argc, char **argv)
{
	struct io_uring ring;
	struct sockaddr_in address = { .sin_family = AF_INET };

	if (argc != 3 || inet_pton(AF_INET, argv[1], &address.sin_addr) != 1) {
		fprintf(stderr, "usage: uring IPV4 PORT\n");
		return 2;
	}
	address.sin_port = htons(atoi(argv[2]));
	if (io_uring_queue_init(4, &ring, 0) != 0) {
		fprintf(stderr, "io_uring_queue_init failed\n");
		return 1;
	}
	io_uring_prep_socket(io_uring_get_sqe(&ring), AF_INET, SOCK_STREAM, 0, 0);
	int fd = run(&ring);
	if (fd < 0) {
		fprintf(stderr, "IORING_OP_SOCKET: %s\n", strerror(-fd));
		return 1;
	}
	io_uring_prep_connect(io_uring_get_sqe(&ring), fd, (struct sockaddr *)&address,
			      sizeof(address));
	int ret = run(&ring);
	if (ret != 0) {
		fprintf(stderr, "IORING_OP_CONNECT: %s\n", strerror(-ret));
		return 1;
	}
	printf("role=client peer=%s:%s calls=- keepalive=%d idle=%d intvl=%d cnt=%d uto=%d\n", argv[1],
	       argv[2], get(fd, SOL_SOCKET, SO_KEEPALIVE), get(fd, IPPROTO_TCP, TCP_KEEPIDLE),
	       get(fd, IPPROTO_TCP, TCP_KEEPINTVL), get(fd, IPPROTO_TCP, TCP_KEEPCNT),
	       get(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
	return 0;
}
