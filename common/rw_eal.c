/*
 * rw_eal.c - see rw_eal.h.
 */
#include "rw_eal.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>

#include "rw_mbuf.h"

#define RW_EAL_MAX_ARGS 64

/* The EAL creates its runtime directory (/var/run/dpdk/PREFIX, or under
 * $XDG_RUNTIME_DIR) even with --no-shconf, and rte_eal_cleanup leaves it: with a
 * prefix per process, every command would leave one behind. It is empty with
 * --no-shconf and --no-telemetry (the telemetry socket is unlinked only at exit);
 * rmdir removes only an empty one (a user's EAL arguments may keep files there). */
static void eal_cleanup(void)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", rte_eal_get_runtime_dir());
    rte_eal_cleanup();
    if (*dir)
        rmdir(dir);
}

/* Runtime directories of rewind processes that died without their cleanup (a
 * kill -9, a crash, builds before --no-telemetry) are removed by the next one:
 * every "rewind-PID" directory beside ours whose PID is gone, with the telemetry
 * socket a dead EAL left in it. A directory holding anything else (a user's EAL
 * arguments) or of a live process stays; a PID reused since by another process
 * keeps its directory until that one is gone too. */
static void remove_dead_runtime_dirs(void)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", rte_eal_get_runtime_dir());
    char *slash = strrchr(dir, '/');
    if (!slash)
        return;
    *slash = '\0';
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d));) {
        char *end;
        if (strncmp(de->d_name, "rewind-", 7))
            continue;
        long pid = strtol(de->d_name + 7, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[PATH_MAX + 256], sock[PATH_MAX + 300];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        snprintf(sock, sizeof(sock), "%s/dpdk_telemetry.v2", path);
        struct stat st;
        if (lstat(sock, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(sock);
        rmdir(path);
    }
    closedir(d);
}

static bool is_vdev(const char *devargs)
{
    return !strncmp(devargs, "net_", 4) || !strncmp(devargs, "eth_", 4);
}

int rw_eal_init(int user_argc, char **user_argv, const char *devargs, struct rw_err *e)
{
    /* The EAL may keep pointers into argv for the life of the process. */
    static char prefix[64], dev[4200];
    char *argv[RW_EAL_MAX_ARGS];
    int argc = 0;
    if (user_argc > RW_EAL_MAX_ARGS - 8)
        return rw_errf(e, RW_EINVAL, "too many EAL arguments");
    argv[argc++] = "rewind";
    if (user_argc == 0) {
        argv[argc++] = "--no-huge";
        argv[argc++] = "-m";
        argv[argc++] = "256";
        argv[argc++] = "--no-shconf";
        argv[argc++] = "--no-telemetry"; /* its socket would keep the runtime dir */
        if (!devargs || is_vdev(devargs))
            argv[argc++] = "--no-pci";
        argv[argc++] = "--log-level=error";
        snprintf(prefix, sizeof(prefix), "--file-prefix=rewind-%d", (int)getpid());
        argv[argc++] = prefix;
    }
    for (int i = 0; i < user_argc; i++)
        argv[argc++] = user_argv[i];
    if (devargs) {
        snprintf(dev, sizeof(dev), "%s=%s", is_vdev(devargs) ? "--vdev" : "--allow", devargs);
        argv[argc++] = dev;
    }
    argv[argc] = NULL;
    if (rte_eal_init(argc, argv) < 0) {
        int err = rte_errno;
        const char *dir = rte_eal_get_runtime_dir();
        if (dir && *dir)
            rmdir(dir);
        return rw_errf(e, RW_EDPDK, "DPDK EAL init failed: %s", rte_strerror(err));
    }
    if (user_argc == 0)
        remove_dead_runtime_dirs();
    if (devargs && rte_eth_dev_count_avail() == 0) {
        eal_cleanup();
        return rw_errf(e, RW_EDPDK, "DPDK found no port for '%s'", devargs);
    }
    return 0;
}

struct rte_mempool *rw_pool_create(const char *name, unsigned n, struct rw_err *e)
{
    struct rte_mempool *mp = rte_pktmbuf_pool_create(name, n, 256, RW_MBUF_PRIV_SIZE,
                                                     RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
    if (!mp)
        rw_errf(e, RW_EDPDK, "mbuf pool: %s", rte_strerror(rte_errno));
    return mp;
}

int rw_rx_timestamp(uint64_t *flag)
{
    int off = rte_mbuf_dynfield_lookup(RTE_MBUF_DYNFIELD_TIMESTAMP_NAME, NULL);
    int bit = rte_mbuf_dynflag_lookup(RTE_MBUF_DYNFLAG_RX_TIMESTAMP_NAME, NULL);
    if (off < 0 || bit < 0)
        return -1;
    *flag = 1ull << bit;
    return off;
}

/* Jumbo rx: a frame of max_frame bytes needs an MTU of max_frame less the Ethernet
 * header and CRC, and, beyond one mbuf's room, scattered rx. */
static int jumbo_conf(uint16_t port, struct rte_mempool *pool, uint32_t max_frame,
                      struct rte_eth_conf *conf, struct rw_err *e)
{
    struct rte_eth_dev_info di;
    int rc = rte_eth_dev_info_get(port, &di);
    if (rc)
        return rw_errf(e, RW_EDPDK, "port %u info: %s", port, rte_strerror(-rc));
    uint32_t mtu = max_frame - RTE_ETHER_HDR_LEN - RTE_ETHER_CRC_LEN;
    if (max_frame > di.max_rx_pktlen || mtu > di.max_mtu)
        return rw_errf(e, RW_EDPDK,
                       "port %u (%s) takes frames up to %u bytes (MTU %u); the chain's max_frame "
                       "is %u: lower it in the chain file",
                       port, di.driver_name, di.max_rx_pktlen, di.max_mtu, max_frame);
    if (mtu > RTE_ETHER_MTU)
        conf->rxmode.mtu = mtu;
    uint32_t room = rte_pktmbuf_data_room_size(pool) - RTE_PKTMBUF_HEADROOM;
    if (max_frame > room && (di.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER))
        conf->rxmode.offloads |= RTE_ETH_RX_OFFLOAD_SCATTER;
    return 0;
}

int rw_port_start(uint16_t port, struct rte_mempool *pool, uint32_t max_frame, struct rw_err *e)
{
    int off;
    uint64_t flag;
    if (pool && rte_mbuf_dyn_rx_timestamp_register(&off, &flag) < 0)
        return rw_errf(e, RW_EDPDK, "rx timestamp field: %s", rte_strerror(rte_errno));
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    int rc = pool && max_frame ? jumbo_conf(port, pool, max_frame, &conf, e) : 0;
    if (rc)
        return rc;
    rc = rte_eth_dev_configure(port, pool ? 1 : 0, 1, &conf);
    if (rc < 0)
        return rw_errf(e, RW_EDPDK, "port %u configure: %s", port, rte_strerror(-rc));
    int sock = rte_eth_dev_socket_id(port);
    if (pool && (rc = rte_eth_rx_queue_setup(port, 0, 1024, sock, NULL, pool)) < 0)
        return rw_errf(e, RW_EDPDK, "port %u rx queue: %s", port, rte_strerror(-rc));
    if ((rc = rte_eth_tx_queue_setup(port, 0, 1024, sock, NULL)) < 0)
        return rw_errf(e, RW_EDPDK, "port %u tx queue: %s", port, rte_strerror(-rc));
    if ((rc = rte_eth_dev_start(port)) < 0)
        return rw_errf(e, RW_EDPDK, "port %u start: %s", port, rte_strerror(-rc));
    return 0;
}

void rw_eal_fini(uint16_t port)
{
    if (rte_eth_dev_is_valid_port(port)) {
        rte_eth_dev_stop(port);
        rte_eth_dev_close(port);
    }
    eal_cleanup();
}
