/* The user store: users live in an sl_map keyed by their id in decimal text, values copied in
 * and out (a demo_user is fixed-size), so no handler ever holds a pointer into the map and
 * reads of different shards never contend — the race-free version of Go's map + RWMutex.
 *
 * Ids come from one atomic counter: creation never takes a lock beyond the map's shard lock.
 * Validation is strict and answers with a reason a client can act on; JSON goes through
 * jansson in both directions (no hand-rolled escaping of user-supplied text). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

int demo_store_init(demo_app *app)
{
    sl_map_opts o = {.value_size = sizeof(demo_user), .key_inline = 24, .capacity = 1024};
    return sl_map_new(&o, &app->users);
}

void demo_store_destroy(demo_app *app)
{
    sl_map_free(app->users);
    app->users = NULL;
}

static int fail(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return SL_EINVAL;
}

/* A plausible address, not RFC 5322: one '@', a non-empty local part, a dotted domain, no
 * spaces or control characters. */
static bool email_ok(const char *e)
{
    const char *at = strchr(e, '@');
    if (!at || at == e || strchr(at + 1, '@')) return false;
    const char *dot = strrchr(at + 1, '.');
    if (!dot || dot == at + 1 || dot[1] == '\0') return false;
    for (const char *p = e; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) return false;
    return true;
}

static int get_string(json_t *obj, const char *field, size_t max, char *out, char *err,
                      size_t errlen)
{
    json_t *v = json_object_get(obj, field);
    if (!v) {
        snprintf(err, errlen, "missing field \"%s\"", field);
        return SL_EINVAL;
    }
    if (!json_is_string(v)) {
        snprintf(err, errlen, "field \"%s\" must be a string", field);
        return SL_EINVAL;
    }
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > max) {
        snprintf(err, errlen, "field \"%s\" must have 1..%zu bytes", field, max);
        return SL_EINVAL;
    }
    if (memchr(s, '\0', n)) {
        snprintf(err, errlen, "field \"%s\" holds a NUL", field);
        return SL_EINVAL;
    }
    memcpy(out, s, n + 1);
    return 0;
}

int demo_user_parse(const void *body, size_t len, demo_user *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    if (!body || len == 0)
        return fail(err, errlen, "empty body: want {\"name\":...,\"email\":...}");
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errlen, "invalid JSON: %s", je.text);
        return SL_EINVAL;
    }
    int rc;
    if (!json_is_object(root))
        rc = fail(err, errlen, "body must be a JSON object");
    else if ((rc = get_string(root, "name", sizeof u->name - 1, u->name, err, errlen)) == 0 &&
             (rc = get_string(root, "email", sizeof u->email - 1, u->email, err, errlen)) == 0 &&
             !email_ok(u->email))
        rc = fail(err, errlen, "field \"email\" is not an e-mail address");
    json_decref(root);
    return rc;
}

int demo_user_create(demo_app *app, demo_user *u)
{
    /* A bounded store: a slot is taken before the insert and given back if it fails, so the
     * count never passes users_max, even for a moment. */
    if (atomic_fetch_add(&app->nusers, 1) >= app->cfg.users_max) {
        atomic_fetch_sub(&app->nusers, 1);
        return SL_EFULL;
    }
    u->id = atomic_fetch_add(&app->next_id, 1) + 1;
    u->created_ms = sl_wall_ns() / 1000000;
    char key[24];
    int n = snprintf(key, sizeof key, "%lld", (long long)u->id);
    int rc = sl_map_put(app->users, key, (size_t)n, u);
    if (rc < 0) atomic_fetch_sub(&app->nusers, 1);
    return rc < 0 ? rc : 0;
}

int demo_user_get(demo_app *app, const char *id, size_t idlen, demo_user *out)
{
    /* Only canonical ids ("7", not "007" or "+7") name a user: the map key is the exact text. */
    if (idlen == 0 || idlen > 19 || (id[0] == '0' && idlen > 1)) return SL_ENOENT;
    for (size_t i = 0; i < idlen; i++)
        if (id[i] < '0' || id[i] > '9') return SL_ENOENT;
    return sl_map_get(app->users, id, idlen, out);
}

char *demo_user_json(const demo_user *u)
{
    json_t *o = json_pack("{s:I, s:s, s:s, s:I}", "id", (json_int_t)u->id, "name", u->name, "email",
                          u->email, "created_ms", (json_int_t)u->created_ms);
    if (!o) return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}
