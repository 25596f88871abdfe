/*
 * nf_env.c - the NF instance and the environment an NF sees while it processes
 * one packet (nf.h).
 *
 * State: with FT every op goes to the store with the op identity (clock, seq);
 * the sequence starts at sub << 16, so two packets with one clock (an upstream
 * NF's several outputs for one input) never share op identities. Without FT the
 * ops go to a local map (traditional NFs, the baseline).
 */
#include "nf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nf_localstate.h"

#define MAX_EMITS 8 /* per input per NF: sub = in_sub * 8 + emit index */

struct nf_env {
    const struct nf_inst_opts *o;
    struct store_client *sc;
    struct lstate ls;
    struct nf_counter *counters;
    const struct rw_meta *in;
    uint32_t seq;
    unsigned emits;
    struct rw_err err;
};

struct nf_inst {
    struct nf_inst_opts o;
    void *self;
    struct nf_env env;
    struct nf_counter own[NF_COUNTERS];
};

static int env_err(struct nf_env *env, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int env_err(struct nf_env *env, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(env->err.msg, sizeof(env->err.msg), fmt, ap);
    va_end(ap);
    env->err.code = rc;
    return rc;
}

uint64_t nf_now(const struct nf_env *env)
{
    return env->in->ts_ns;
}

uint16_t nf_slot(const struct nf_env *env)
{
    return env->o->slot;
}

static int next_id(struct nf_env *env, struct store_opid *id)
{
    if (env->seq > 0xffff) /* the next would take another output's identities */
        return env_err(env, STORE_EINVAL, "more than 65536 store ops for packet %" PRIu64,
                       env->in->clock);
    uint32_t seq = ((uint32_t)env->in->sub << 16) | env->seq++;
    *id = (struct store_opid){.clock = env->in->clock, .seq = seq};
    return 0;
}

static int store_err(struct nf_env *env, int rc)
{
    if (rc)
        env_err(env, rc, "store: %s", store_client_errmsg(env->sc));
    return rc;
}

int nf_get(struct nf_env *env, const struct store_key *k, void *buf, size_t cap, size_t *len,
           bool *found)
{
    if (!env->o->ft)
        return lstate_get(&env->ls, k, buf, cap, len, found);
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return store_err(env, store_get(env->sc, &id, k, buf, cap, len, found));
}

int nf_get_int(struct nf_env *env, const struct store_key *k, int64_t *v, bool *found)
{
    *v = 0;
    if (!env->o->ft) {
        size_t len;
        int rc = lstate_get(&env->ls, k, v, sizeof(*v), &len, found);
        if (!rc && *found && len != sizeof(*v))
            rc = STORE_ETYPE;
        return rc;
    }
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return store_err(env, store_get_int(env->sc, &id, k, v, found));
}

int nf_put(struct nf_env *env, const struct store_key *k, const void *val, size_t len)
{
    if (!env->o->ft)
        return lstate_put(&env->ls, k, val, len);
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return store_err(env, store_put(env->sc, &id, k, val, len));
}

int nf_del(struct nf_env *env, const struct store_key *k)
{
    if (!env->o->ft)
        return lstate_del(&env->ls, k);
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return store_err(env, store_del(env->sc, &id, k));
}

int nf_incr(struct nf_env *env, const struct store_key *k, int64_t delta, int64_t *result)
{
    if (!env->o->ft)
        return lstate_incr(&env->ls, k, delta, result);
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return store_err(env, store_incr(env->sc, &id, k, delta, result));
}

int nf_push(struct nf_env *env, const struct store_key *k, const void *val, size_t len)
{
    if (!env->o->ft)
        return lstate_push(&env->ls, k, val, len);
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return store_err(env, store_push(env->sc, &id, k, val, len));
}

int nf_pop(struct nf_env *env, const struct store_key *k, void *buf, size_t cap, size_t *len,
           bool *found)
{
    if (!env->o->ft)
        return lstate_pop(&env->ls, k, buf, cap, len, found);
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return store_err(env, store_pop(env->sc, &id, k, buf, cap, len, found));
}

int nf_count(struct nf_env *env, const char *name, int64_t delta)
{
    struct nf_counter *c = env->counters;
    for (int i = 0; i < NF_COUNTERS; i++) {
        if (!c[i].name[0])
            snprintf(c[i].name, sizeof(c[i].name), "%s", name);
        if (!strncmp(c[i].name, name, sizeof(c[i].name) - 1)) {
            atomic_fetch_add(&c[i].value, delta);
            return 0;
        }
    }
    return 0; /* more names than slots: statistics only, never an error */
}

int nf_alert(struct nf_env *env, const char *type, const char *fields_json)
{
    if (!env->o->alerts)
        return 0;
    fprintf(env->o->alerts,
            "{\"clock\": %llu, \"ts\": %llu, \"nf\": \"%s\", \"type\": \"%s\"%s%s}\n",
            (unsigned long long)env->in->clock, (unsigned long long)env->in->ts_ns, env->o->name,
            type, fields_json && *fields_json ? ", " : "", fields_json ? fields_json : "");
    /* Now, not at exit: a worker may be killed at any instant, and its store
     * watermark may pass this packet as soon as the NF returns. */
    fflush(env->o->alerts);
    return 0;
}

int nf_emit(struct nf_env *env, const uint8_t *data, uint32_t len, uint32_t wire_len)
{
    if (env->emits >= MAX_EMITS)
        return env_err(env, RW_EINVAL, "more than %d packets emitted for one input", MAX_EMITS);
    uint16_t sub = (uint16_t)(env->in->sub * MAX_EMITS + env->emits++);
    if (!env->o->emit)
        return 0;
    return env->o->emit(env->o->emit_ctx, env->in, sub, data, len, wire_len, &env->err);
}

/* ---- the instance ---- */

int nf_inst_open(const struct nf_inst_opts *o, struct nf_inst **out, struct rw_err *e)
{
    struct nf_inst *n = calloc(1, sizeof(*n));
    if (!n)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    n->o = *o;
    n->env.o = &n->o;
    n->env.counters = o->counters ? o->counters : n->own;
    n->self = calloc(1, o->def->self_size ? o->def->self_size : 1);
    int rc = n->self ? 0 : rw_errf(e, RW_ENOMEM, "out of memory");
    if (!rc && !o->ft && (rc = lstate_init(&n->env.ls)))
        rw_errf(e, RW_ENOMEM, "out of memory");
    if (!rc && (rc = o->def->init(n->self, o->config, e))) {
        if (!o->ft)
            lstate_free(&n->env.ls);
    }
    if (rc) {
        free(n->self);
        free(n);
        return rc;
    }
    *out = n;
    return 0;
}

void nf_inst_set_client(struct nf_inst *n, struct store_client *sc)
{
    n->env.sc = sc;
}

int nf_inst_process(struct nf_inst *n, const struct rw_meta *meta, const uint8_t *data,
                    uint32_t len, uint32_t wire_len, unsigned *emitted, struct rw_err *e)
{
    struct nf_env *env = &n->env;
    env->in = meta;
    env->seq = 0;
    env->emits = 0;
    env->err.code = 0;
    env->err.msg[0] = '\0';
    struct nf_pkt p = {.meta = *meta, .data = data, .len = len, .wire_len = wire_len};
    int rc = n->o.def->process(n->self, env, &p);
    if (emitted)
        *emitted = env->emits;
    if (rc)
        rw_errf(e, rc, "%s", env->err.msg[0] ? env->err.msg : rw_strerror(rc));
    return rc;
}

void nf_inst_close(struct nf_inst *n)
{
    if (!n)
        return;
    if (n->o.def->fini)
        n->o.def->fini(n->self);
    if (!n->o.ft)
        lstate_free(&n->env.ls);
    free(n->self);
    free(n);
}
