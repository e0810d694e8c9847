/* Send/recv, one-sided Put/Get in a window, Allreduce: every byte checked. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#define N (1 << 16)   /* 64 Ki ints = 256 KiB: past UCX's eager limits (rendezvous, RDMA) */

static int fail(const char *what, int rank, long i, long got, long want)
{
	fprintf(stderr, "rank %d: %s: [%ld] = %ld, want %ld\n", rank, what, i, got, want);
	MPI_Abort(MPI_COMM_WORLD, 2);
	return 2;
}

int main(int argc, char **argv)
{
	int rank, size, peer;
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	peer = rank ^ 1;
	int *buf = malloc(N * sizeof(int)), *win_mem, *tmp = malloc(N * sizeof(int));
	long sizes[] = {1, 100, 2048, N};
	/* send/recv both ways, several sizes (eager and rendezvous) */
	for (int s = 0; s < 4; s++) {
		long n = sizes[s];
		for (int dir = 0; dir < 2; dir++) {
			int sender = dir;
			if (rank == sender) {
				for (long i = 0; i < n; i++) buf[i] = (int)(i * 7 + n + dir);
				MPI_Send(buf, n, MPI_INT, peer, 10 + s, MPI_COMM_WORLD);
			} else {
				memset(buf, 0, n * sizeof(int));
				MPI_Recv(buf, n, MPI_INT, peer, 10 + s, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
				for (long i = 0; i < n; i++)
					if (buf[i] != (int)(i * 7 + n + dir)) return fail("recv", rank, i, buf[i], i * 7 + n + dir);
			}
		}
	}
	if (rank == 0) printf("sendrecv ok\n");
	/* one-sided: each rank puts into the other's window, then gets it back */
	MPI_Win win;
	MPI_Win_allocate(N * sizeof(int), sizeof(int), MPI_INFO_NULL, MPI_COMM_WORLD, &win_mem, &win);
	memset(win_mem, 0, N * sizeof(int));
	for (long i = 0; i < N; i++) buf[i] = (int)(i ^ (rank << 20));
	MPI_Win_fence(0, win);
	MPI_Put(buf, N, MPI_INT, peer, 0, N, MPI_INT, win);
	MPI_Win_fence(0, win);
	for (long i = 0; i < N; i++)
		if (win_mem[i] != (int)(i ^ (peer << 20))) return fail("put", rank, i, win_mem[i], i ^ (peer << 20));
	for (long i = 0; i < N; i++) win_mem[i] = (int)(i * 3 + rank);
	MPI_Win_fence(0, win);
	MPI_Get(tmp, N, MPI_INT, peer, 0, N, MPI_INT, win);
	MPI_Win_fence(0, win);
	for (long i = 0; i < N; i++)
		if (tmp[i] != (int)(i * 3 + peer)) return fail("get", rank, i, tmp[i], i * 3 + peer);
	MPI_Win_free(&win);
	if (rank == 0) printf("put get ok\n");
	/* allreduce */
	for (long i = 0; i < N; i++) buf[i] = (int)(i + rank * 1000);
	MPI_Allreduce(buf, tmp, N, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	for (long i = 0; i < N; i++) {
		long want = (long)size * i + 1000L * size * (size - 1) / 2;
		if (tmp[i] != (int)want) return fail("allreduce", rank, i, tmp[i], want);
	}
	if (rank == 0) printf("allreduce ok\n");
	MPI_Barrier(MPI_COMM_WORLD);
	if (rank == 0) printf("mpi_hmr: all ok on %d ranks\n", size);
	free(buf); free(tmp);
	MPI_Finalize();
	return 0;
}
