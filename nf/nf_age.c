/*
 * nf_age.c - bounded NF state: each slot's age queues (nf.h, nf_age).
 *
 * NFs run only on packets, so an object whose flow or host never sends again
 * (a connection that just stopped, a scanner's probe, a host gone quiet) would
 * stay in the store for ever: on a long run the store fills. An NF that creates
 * such objects puts each one's key in an age queue when it creates it, and every
 * time it does, the queue's oldest keys are looked at: the NF's judge says
 * whether the object is still alive (its key goes to the back of the queue) or
 * is gone (ended by the judge now: expired, with whatever the NF does then, such
 * as a NAT port going back to the pool and its nat.unmap event; or deleted or
 * replaced already). Each add looks at AGE_LOOK keys, so the queue holds at most
 * about AGE_LOOK times the live objects plus the dead ones not yet reached.
 *
 * Why a queue per slot, kept through nf_get/nf_put like any state: the queue is
 * the slot's own per-flow state, so its reads are answered by the per-flow cache
 * and its writes are blind; a replay issues the same ops with the same op
 * identities (the judge runs inside the packet that added the key), so expiry is
 * replayed exactly; and every slot's NF sees its inputs in clock order, so which
 * object expires at which packet is the same in every run. --no-ft keeps the
 * queue in its local state, through the same calls.
 *
 * A ticket, unique per add, travels with the key; the NF keeps it in the object
 * and its judge says "gone" when they differ, so the entry of a deleted object
 * never keeps the object that later took its key alive for a second time.
 *
 * Layout (per-flow objects of the slot, under the NF's queue object id):
 *   slot2 0 0           -> head8 tail8 tickets8 (entries head..tail-1 exist)
 *   slot2 'e' 0 index8  -> ticket8 key
 */
#include "nf.h"

#include <string.h>

#include "store.h"

#define AGE_LOOK 2 /* oldest keys looked at per key added */

struct age_meta {
    uint64_t head, tail, tickets;
};

static void put64(uint8_t *p, uint64_t v)
{
    rw_put_be64(p, v);
}

static struct store_key meta_key(const struct nf_env *env, uint16_t object, uint8_t kb[4])
{
    kb[0] = (uint8_t)(nf_slot(env) >> 8), kb[1] = (uint8_t)nf_slot(env), kb[2] = kb[3] = 0;
    return (struct store_key){.scope = STORE_FLOW, .object = object, .bytes = kb, .len = 4};
}

static struct store_key entry_key(const struct nf_env *env, uint16_t object, uint64_t index,
                                  uint8_t kb[12])
{
    kb[0] = (uint8_t)(nf_slot(env) >> 8), kb[1] = (uint8_t)nf_slot(env), kb[2] = 'e', kb[3] = 0;
    put64(kb + 4, index);
    return (struct store_key){.scope = STORE_FLOW, .object = object, .bytes = kb, .len = 12};
}

static int put_entry(struct nf_env *env, uint16_t object, uint64_t index, uint64_t ticket,
                     const void *key, size_t len)
{
    uint8_t kb[12], v[8 + STORE_KEY_MAX];
    struct store_key k = entry_key(env, object, index, kb);
    put64(v, ticket);
    memcpy(v + 8, key, len);
    return nf_put(env, &k, v, 8 + len);
}

/* Takes the oldest entry off the queue and lets the judge decide on it. */
static int look(struct nf_env *env, const struct nf_aging *a, void *self, struct age_meta *m)
{
    uint8_t kb[12], v[8 + STORE_KEY_MAX];
    struct store_key k = entry_key(env, a->object, m->head++, kb);
    size_t len;
    bool found;
    int rc = nf_get(env, &k, v, sizeof(v), &len, &found);
    if (rc || !found || len < 8)
        return rc; /* a lost entry only costs its object a look */
    if ((rc = nf_del(env, &k)))
        return rc;
    uint64_t ticket = rw_get_be64(v);
    enum nf_age_verdict verdict = NF_AGE_GONE;
    if ((rc = a->judge(self, env, v + 8, len - 8, ticket, &verdict)) || verdict == NF_AGE_GONE)
        return rc;
    return put_entry(env, a->object, m->tail++, ticket, v + 8, len - 8);
}

int nf_age_object(struct nf_env *env, const struct store_key *k, void *obj, size_t size,
                  size_t ticket_off, uint64_t ticket, bool *current)
{
    size_t got;
    bool found;
    uint64_t t;
    int rc = nf_get(env, k, obj, size, &got, &found);
    *current = false;
    if (rc || !found || got != size || ticket_off + sizeof(t) > size)
        return rc == STORE_ETOOBIG ? 0 : rc; /* another shape: not the entry's object */
    memcpy(&t, (const uint8_t *)obj + ticket_off, sizeof(t));
    *current = t == ticket;
    return 0;
}

int nf_age(struct nf_env *env, const struct nf_aging *a, void *self, const void *key, size_t len,
           uint64_t *ticket)
{
    if (len > STORE_KEY_MAX)
        return RW_EINVAL;
    uint8_t mk[4], mv[24];
    struct store_key k = meta_key(env, a->object, mk);
    struct age_meta m = {0};
    size_t got;
    bool found;
    int rc = nf_get(env, &k, mv, sizeof(mv), &got, &found);
    if (rc)
        return rc;
    if (found && got == sizeof(mv))
        m = (struct age_meta){rw_get_be64(mv), rw_get_be64(mv + 8), rw_get_be64(mv + 16)};
    for (int i = 0; i < AGE_LOOK && m.head < m.tail && !rc; i++)
        rc = look(env, a, self, &m);
    if (rc)
        return rc;
    *ticket = ++m.tickets;
    if ((rc = put_entry(env, a->object, m.tail++, *ticket, key, len)))
        return rc;
    put64(mv, m.head);
    put64(mv + 8, m.tail);
    put64(mv + 16, m.tickets);
    return nf_put(env, &k, mv, sizeof(mv));
}
