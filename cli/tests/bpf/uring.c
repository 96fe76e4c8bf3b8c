/*
 * An io_uring client for the eBPF policy tests: the socket is made and connected by the kernel
 * from the ring (IORING_OP_SOCKET, IORING_OP_CONNECT; Linux >= 5.19), never by socket(2) or
 * connect(2), which is what a preload would need to see. Prints what getsockopt reads back.
 *
 *   uring ADDR PORT [IDLE]    (IPv4)
 *
 * With IDLE, TCP_KEEPIDLE is then set to it from the ring too (IORING_OP_URING_CMD with
 * SOCKET_URING_OP_SETSOCKOPT, Linux >= 6.7; the SQE is filled by hand, liburing 2.3 predates
 * it), and "calls=" shows its result.
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

	if (argc < 3 || argc > 4 || inet_pton(AF_INET, argv[1], &address.sin_addr) != 1) {
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
	char calls[32] = "-";
	if (argc == 4) {
		/* include/uapi/linux/io_uring.h (6.7): cmd_op at 8, level and optname at 16,
		 * optlen at 44, optval at 48. */
		int idle = atoi(argv[3]);
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		unsigned char *raw = (unsigned char *)sqe;
		__u32 cmd_op = 3 /* SOCKET_URING_OP_SETSOCKOPT */, level = IPPROTO_TCP,
		      optname = TCP_KEEPIDLE, optlen = sizeof(idle);
		__u64 optval = (__u64)(unsigned long)&idle;

		memset(sqe, 0, sizeof(*sqe));
		sqe->opcode = 46; /* IORING_OP_URING_CMD */
		sqe->fd = fd;
		memcpy(raw + 8, &cmd_op, 4);
		memcpy(raw + 16, &level, 4);
		memcpy(raw + 20, &optname, 4);
		memcpy(raw + 44, &optlen, 4);
		memcpy(raw + 48, &optval, 8);
		snprintf(calls, sizeof(calls), "%d", run(&ring));
	}
	printf("role=client peer=%s:%s calls=%s keepalive=%d idle=%d intvl=%d cnt=%d uto=%d\n", argv[1],
	       argv[2], calls, get(fd, SOL_SOCKET, SO_KEEPALIVE), get(fd, IPPROTO_TCP, TCP_KEEPIDLE),
	       get(fd, IPPROTO_TCP, TCP_KEEPINTVL), get(fd, IPPROTO_TCP, TCP_KEEPCNT),
	       get(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
	return 0;
}
