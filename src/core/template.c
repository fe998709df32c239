/* template.c -- job requests, templates with typed parameters, and the plan
 * (argv, env, limits) a job is spawned with. See include/pipecast/template.h
 * and docs/jobs.md.
 *
 * The config is kept as its (checked) cJSON tree: it is small, and the same
 * checking code then serves the runner (config file) and the gateway (the
 * "params" a runner publishes in its heartbeat).
 */
#include "pipecast/template.h"

#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipecast/channel.h"
#include "pipecast/error.h"

#define DEFAULT_PATTERN "^[A-Za-z0-9_.,:@=+/-]*$"
#define ENV_PATH "PATH=/usr/local/bin:/usr/bin:/bin"
#define ENV_MAX 512            /* variables in a job's environment */
#define ENV_VALUE_MAX 32768    /* bytes of one value */
#define ELEM_MAX (64 * 1024)   /* bytes of one argv element after substitution */
#define LIMIT_MAX 2147483647L  /* largest accepted limit value */
#define BACKOFF_MAX_MS 3600000 /* restart backoff upper bound */
#define ATTEMPTS_MAX 100       /* restart attempts upper bound */

struct pc_tmpl_set {
    cJSON *root;            /* the whole config */
    const cJSON *templates; /* root.templates, may be NULL */
    struct pc_limits max;   /* limits_max, 0 = no cap */
    long max_timeout_s;     /* limits_max.timeout_s, 0 = no cap */
};

/* ------------------------------------------------------------ small helpers */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return PC_EINVAL;
}

/* @return 1 when @p v is a JSON number holding an integer in [min, max]. */
static int get_int(const cJSON *v, long min, long max, long *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= (double)min && d <= (double)max))
        return 0;
    long l = (long)d;
    if ((double)l != d)
        return 0;
    *out = l;
    return 1;
}

static int is_ident(const char *s, size_t len)
{
    if (len == 0 || len > PC_TMPL_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

static int env_name_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 256)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

static int template_name_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > PC_TMPL_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* Keys starting with '_' are comments in the config file. */
static int is_comment_key(const char *k)
{
    return k != NULL && k[0] == '_';
}

static int key_in(const char *k, const char *const *keys)
{
    for (; *keys != NULL; keys++)
        if (strcmp(k, *keys) == 0)
            return 1;
    return 0;
}

/* Refuse keys outside @p keys and duplicated keys (cJSON keeps both). */
static int check_keys(const cJSON *obj, const char *const *keys, int allow_comments,
                      const char *where, char *err, size_t errlen)
{
    for (const cJSON *c = obj->child; c != NULL; c = c->next) {
        if (allow_comments && is_comment_key(c->string))
            continue;
        if (!key_in(c->string, keys))
            return fail(err, errlen, "%s\"%s\": unknown key", where, c->string);
        for (const cJSON *d = c->next; d != NULL; d = d->next)
            if (strcmp(c->string, d->string) == 0)
                return fail(err, errlen, "%s\"%s\": duplicate key", where, c->string);
    }
    return 0;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* ------------------------------------------------------------ limits */

static const char *const limit_keys[] = {"cpu_s", "as_mb", "nofile", "nproc", NULL};
static const char *const limit_max_keys[] = {"cpu_s", "as_mb",     "nofile",
                                             "nproc", "timeout_s", NULL};

static int parse_limits(const cJSON *o, int with_timeout, struct pc_limits *l, long *timeout_s,
                        const char *where, char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    if (o == NULL)
        return 0;
    if (!cJSON_IsObject(o))
        return fail(err, errlen, "%s: must be an object", where);
    int rc = check_keys(o, with_timeout ? limit_max_keys : limit_keys, 0, where, err, errlen);
    if (rc != 0)
        return rc;
    for (const cJSON *c = o->child; c != NULL; c = c->next) {
        long v;
        if (!get_int(c, 1, LIMIT_MAX, &v))
            return fail(err, errlen, "%s\"%s\": must be a positive integer", where, c->string);
        if (strcmp(c->string, "cpu_s") == 0)
            l->cpu_s = v;
        else if (strcmp(c->string, "as_mb") == 0)
            l->as_mb = v;
        else if (strcmp(c->string, "nofile") == 0)
            l->nofile = v;
        else if (strcmp(c->string, "nproc") == 0)
            l->nproc = v;
        else if (timeout_s != NULL)
            *timeout_s = v;
    }
    return 0;
}

/* The smallest non-zero of three values (0 when all are 0). */
static long min3(long a, long b, long c)
{
    long m = 0;
    long v[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (v[i] > 0 && (m == 0 || v[i] < m))
            m = v[i];
    return m;
}

/* ------------------------------------------------------------ requests */

static const char *const request_keys[] = {"template", "args", "argv",   "channel",
                                           "session",  "env",  "cwd",    "timeout_s",
                                           "stdin",    "pty",  "limits", NULL};

static int check_string(const cJSON *v, size_t min, size_t max, const char *what, char *err,
                        size_t errlen)
{
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return fail(err, errlen, "\"%s\": must be a string", what);
    size_t len = strlen(v->valuestring);
    if (len < min || len > max)
        return fail(err, errlen, "\"%s\": must be %zu-%zu bytes", what, min, max);
    return 0;
}

static int check_env_object(const cJSON *env, const char *where, char *err, size_t errlen)
{
    if (!cJSON_IsObject(env))
        return fail(err, errlen, "%s\"env\": must be an object of strings", where);
    int n = 0;
    for (const cJSON *c = env->child; c != NULL; c = c->next) {
        if (!env_name_valid(c->string))
            return fail(err, errlen, "%s\"env\": invalid variable name \"%.64s\"", where,
                        c->string);
        if (!cJSON_IsString(c) || strlen(c->valuestring) > ENV_VALUE_MAX)
            return fail(err, errlen, "%s\"env\": \"%s\" must be a string of at most %d bytes",
                        where, c->string, ENV_VALUE_MAX);
        for (const cJSON *d = c->next; d != NULL; d = d->next)
            if (strcmp(c->string, d->string) == 0)
                return fail(err, errlen, "%s\"env\": duplicate \"%s\"", where, c->string);
        if (++n > 256)
            return fail(err, errlen, "%s\"env\": more than 256 variables", where);
    }
    return 0;
}

static int check_args_shape(const cJSON *args, char *err, size_t errlen)
{
    if (cJSON_IsObject(args)) {
        for (const cJSON *c = args->child; c != NULL; c = c->next) {
            if (!cJSON_IsString(c) && !cJSON_IsNumber(c) && !cJSON_IsBool(c))
                return fail(err, errlen, "\"args\": \"%.64s\" must be a string, number or bool",
                            c->string);
            if (cJSON_IsString(c) && strlen(c->valuestring) > PC_JOB_ARG_LEN_MAX)
                return fail(err, errlen, "\"args\": \"%.64s\" is longer than %d bytes", c->string,
                            PC_JOB_ARG_LEN_MAX);
        }
        return 0;
    }
    if (cJSON_IsArray(args)) {
        for (const cJSON *c = args->child; c != NULL; c = c->next) {
            if (!cJSON_IsString(c) || strchr(c->valuestring, '=') == NULL)
                return fail(err, errlen, "\"args\": each element must be a \"name=value\" string");
            if (strlen(c->valuestring) > PC_JOB_ARG_LEN_MAX + PC_TMPL_NAME_MAX + 1)
                return fail(err, errlen, "\"args\": an element is too long");
        }
        return 0;
    }
    return fail(err, errlen, "\"args\": must be an object or an array of \"name=value\" strings");
}

int pc_job_request_check(const cJSON *req, char *err, size_t errlen)
{
    int rc;
    long v;
    if (!cJSON_IsObject(req))
        return fail(err, errlen, "request: must be a JSON object");
    if ((rc = check_keys(req, request_keys, 0, "request: ", err, errlen)) != 0)
        return rc;
    const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(req, "template");
    const cJSON *argv = cJSON_GetObjectItemCaseSensitive(req, "argv");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(req, "args");
    if ((tmpl == NULL) == (argv == NULL))
        return fail(err, errlen, "request: exactly one of \"template\" and \"argv\" is required");
    if (tmpl != NULL) {
        if (!cJSON_IsString(tmpl) || !template_name_valid(tmpl->valuestring))
            return fail(err, errlen,
                        "\"template\": must be a name of 1-%d bytes of A-Z a-z 0-9 _ . -",
                        PC_TMPL_NAME_MAX);
        if (args != NULL && (rc = check_args_shape(args, err, errlen)) != 0)
            return rc;
    } else {
        if (args != NULL)
            return fail(err, errlen, "\"args\": only with \"template\"");
        int n = cJSON_GetArraySize(argv);
        if (!cJSON_IsArray(argv) || n < 1 || n > PC_JOB_ARGV_MAX)
            return fail(err, errlen, "\"argv\": must be an array of 1-%d strings", PC_JOB_ARGV_MAX);
        int i = 0;
        for (const cJSON *c = argv->child; c != NULL; c = c->next, i++) {
            if (!cJSON_IsString(c) || strlen(c->valuestring) > PC_JOB_ARG_LEN_MAX)
                return fail(err, errlen, "\"argv\"[%d]: must be a string of at most %d bytes", i,
                            PC_JOB_ARG_LEN_MAX);
        }
        if (argv->child->valuestring[0] == '\0')
            return fail(err, errlen, "\"argv\"[0]: must not be empty");
    }
    const cJSON *c;
    if ((c = cJSON_GetObjectItemCaseSensitive(req, "channel")) != NULL) {
        if (!cJSON_IsString(c) || !pc_channel_valid(c->valuestring, strlen(c->valuestring)))
            return fail(
                err, errlen,
                "\"channel\": invalid name (allowed: 1-200 bytes of A-Z a-z 0-9 . _ : @ -)");
    }
    if ((c = cJSON_GetObjectItemCaseSensitive(req, "session")) != NULL) {
        if (!cJSON_IsString(c) || strlen(c->valuestring) > PC_JOB_SESSION_MAX ||
            !pc_channel_valid(c->valuestring, strlen(c->valuestring)))
            return fail(err, errlen,
                        "\"session\": invalid id (allowed: 1-64 bytes of A-Z a-z 0-9 . _ : @ -)");
    }
    if ((c = cJSON_GetObjectItemCaseSensitive(req, "env")) != NULL &&
        (rc = check_env_object(c, "", err, errlen)) != 0)
        return rc;
    if ((c = cJSON_GetObjectItemCaseSensitive(req, "cwd")) != NULL &&
        (rc = check_string(c, 1, PC_JOB_ARG_LEN_MAX, "cwd", err, errlen)) != 0)
        return rc;
    if ((c = cJSON_GetObjectItemCaseSensitive(req, "timeout_s")) != NULL &&
        !get_int(c, 1, PC_JOB_TIMEOUT_MAX, &v))
        return fail(err, errlen, "\"timeout_s\": must be an integer 1..%d", PC_JOB_TIMEOUT_MAX);
    if ((c = cJSON_GetObjectItemCaseSensitive(req, "stdin")) != NULL && !cJSON_IsString(c))
        return fail(err, errlen, "\"stdin\": must be a string");
    if ((c = cJSON_GetObjectItemCaseSensitive(req, "pty")) != NULL && !cJSON_IsBool(c))
        return fail(err, errlen, "\"pty\": must be true or false");
    if ((c = cJSON_GetObjectItemCaseSensitive(req, "limits")) != NULL) {
        struct pc_limits l;
        if ((rc = parse_limits(c, 0, &l, NULL, "\"limits\": ", err, errlen)) != 0)
            return rc;
    }
    return 0;
}

/* "\u0000" decodes to a NUL that would silently cut the string short. */
static int has_escaped_nul(const char *s, size_t len)
{
    for (size_t i = 0; i + 6 <= len; i++) {
        if (s[i] == '\\') {
            if (s[i + 1] == 'u' && s[i + 2] == '0' && s[i + 3] == '0' && s[i + 4] == '0' &&
                s[i + 5] == '0')
                return 1;
            i++; /* skip the escaped character (an escaped backslash included) */
        }
    }
    return 0;
}

static cJSON *parse_json(const char *json, size_t len, size_t max, const char *what, char *err,
                         size_t errlen)
{
    if (json == NULL || len == 0) {
        fail(err, errlen, "%s: empty", what);
        return NULL;
    }
    if (len > max) {
        fail(err, errlen, "%s: larger than %zu bytes", what, max);
        return NULL;
    }
    if (memchr(json, '\0', len) != NULL || has_escaped_nul(json, len)) {
        fail(err, errlen, "%s: contains a NUL character", what);
        return NULL;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        fail(err, errlen, "%s: out of memory", what);
        return NULL;
    }
    memcpy(copy, json, len);
    copy[len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(copy, &end, 1);
    if (root == NULL) {
        size_t off = end != NULL && end >= copy ? (size_t)(end - copy) : 0;
        fail(err, errlen, "%s: invalid JSON near byte %zu", what, off);
    }
    free(copy);
    return root;
}

cJSON *pc_job_request_parse(const char *json, size_t len, char *err, size_t errlen)
{
    cJSON *req = parse_json(json, len, PC_JOB_SPEC_MAX, "request", err, errlen);
    if (req == NULL)
        return NULL;
    if (pc_job_request_check(req, err, errlen) != 0) {
        cJSON_Delete(req);
        return NULL;
    }
    return req;
}

/* ------------------------------------------------------------ parameters */

enum ptype { P_STRING, P_INT, P_BOOL };

static const char *const param_keys[] = {"type", "pattern",    "required",     "default",     "min",
                                         "max",  "allow_dash", "allow_dotdot", "description", NULL};

static enum ptype param_type(const cJSON *decl)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(decl, "type");
    if (cJSON_IsString(t) && strcmp(t->valuestring, "int") == 0)
        return P_INT;
    if (cJSON_IsString(t) && strcmp(t->valuestring, "bool") == 0)
        return P_BOOL;
    return P_STRING;
}

static int flag(const cJSON *decl, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(decl, key));
}

static int has_dotdot_segment(const char *s)
{
    for (const char *p = s; (p = strstr(p, "..")) != NULL; p++) {
        int start = p == s || p[-1] == '/';
        int end = p[2] == '\0' || p[2] == '/';
        if (start && end)
            return 1;
    }
    return 0;
}

/* Parse a decimal integer strictly: optional '-', 1-18 digits. */
static int parse_decimal(const char *s, long *out)
{
    const char *p = s;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    size_t n = strlen(p);
    if (n == 0 || n > 18)
        return 0;
    long v = 0;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        v = v * 10 + (*p - '0');
    }
    *out = neg ? -v : v;
    return 1;
}

/*
 * Check @p value (text) against the declaration of parameter @p name and
 * @return a newly allocated canonical text (ints without leading zeros) in
 * *out, or PC_EINVAL / PC_ENOMEM.
 */
static int check_value(const char *name, const cJSON *decl, const char *value, char **out,
                       char *err, size_t errlen)
{
    char buf[32];
    enum ptype t = param_type(decl);
    *out = NULL;
    if (strlen(value) > PC_JOB_ARG_LEN_MAX)
        return fail(err, errlen, "parameter \"%s\": longer than %d bytes", name,
                    PC_JOB_ARG_LEN_MAX);
    if (t == P_BOOL) {
        if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0)
            return fail(err, errlen, "parameter \"%s\": must be true or false", name);
    } else if (t == P_INT) {
        long v, lim;
        if (!parse_decimal(value, &v))
            return fail(err, errlen, "parameter \"%s\": \"%.32s\" is not a decimal integer", name,
                        value);
        if (get_int(cJSON_GetObjectItemCaseSensitive(decl, "min"), -LIMIT_MAX - 1, LIMIT_MAX,
                    &lim) &&
            v < lim)
            return fail(err, errlen, "parameter \"%s\": must be >= %ld", name, lim);
        if (get_int(cJSON_GetObjectItemCaseSensitive(decl, "max"), -LIMIT_MAX - 1, LIMIT_MAX,
                    &lim) &&
            v > lim)
            return fail(err, errlen, "parameter \"%s\": must be <= %ld", name, lim);
        snprintf(buf, sizeof(buf), "%ld", v);
        value = buf;
    } else {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(decl, "pattern");
        const char *pattern = cJSON_IsString(pat) ? pat->valuestring : DEFAULT_PATTERN;
        if (value[0] == '-' && !flag(decl, "allow_dash"))
            return fail(err, errlen, "parameter \"%s\": a value may not start with '-'", name);
        if (has_dotdot_segment(value) && !flag(decl, "allow_dotdot"))
            return fail(err, errlen, "parameter \"%s\": \"..\" path segments are not allowed",
                        name);
        regex_t re;
        regmatch_t m;
        if (regcomp(&re, pattern, REG_EXTENDED) != 0)
            return fail(err, errlen, "parameter \"%s\": invalid pattern", name);
        int ok =
            regexec(&re, value, 1, &m, 0) == 0 && m.rm_so == 0 && (size_t)m.rm_eo == strlen(value);
        regfree(&re);
        if (!ok)
            return fail(err, errlen, "parameter \"%s\": value does not match %s", name, pattern);
    }
    *out = xstrdup(value);
    return *out != NULL ? 0 : PC_ENOMEM;
}

/* The text of a request value (JSON string/number/bool) for @p decl's type. */
static int value_text(const char *name, const cJSON *decl, const cJSON *v, char *buf, size_t buflen,
                      const char **out, char *err, size_t errlen)
{
    enum ptype t = param_type(decl);
    if (cJSON_IsString(v)) {
        *out = v->valuestring;
        return 0;
    }
    if (t == P_BOOL && cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v) ? "true" : "false";
        return 0;
    }
    long l;
    if (t == P_INT && get_int(v, -LIMIT_MAX - 1, LIMIT_MAX, &l)) {
        snprintf(buf, buflen, "%ld", l);
        *out = buf;
        return 0;
    }
    return fail(err, errlen, "parameter \"%s\": must be %s", name,
                t == P_BOOL  ? "true or false"
                : t == P_INT ? "an integer"
                             : "a string");
}

/*
 * Resolve @p args against @p params: @p values gets one entry per declared
 * parameter, in declaration order: the checked value, the default, or NULL
 * when absent. The caller frees the strings and the array.
 */
static int resolve_args(const cJSON *params, const cJSON *args, char ***values_out, int *n_out,
                        char *err, size_t errlen)
{
    int n = params != NULL ? cJSON_GetArraySize(params) : 0;
    char **values = calloc((size_t)n + 1, sizeof(char *));
    int rc = 0;
    char nbuf[PC_TMPL_NAME_MAX + 2];
    char ibuf[32];
    if (values == NULL)
        return PC_ENOMEM;
    *values_out = values;
    *n_out = n;

    if (args != NULL && !cJSON_IsObject(args) && !cJSON_IsArray(args))
        return check_args_shape(args, err, errlen);
    /* explicit values */
    for (const cJSON *a = args != NULL ? args->child : NULL; a != NULL; a = a->next) {
        const char *name, *text;
        const cJSON *decl = NULL;
        if (cJSON_IsArray(args)) {
            const char *eq = cJSON_IsString(a) ? strchr(a->valuestring, '=') : NULL;
            if (eq == NULL)
                return fail(err, errlen, "\"args\": each element must be a \"name=value\" string");
            size_t nl = (size_t)(eq - a->valuestring);
            if (nl == 0 || nl > PC_TMPL_NAME_MAX)
                return fail(err, errlen, "\"args\": \"%.64s\": invalid parameter name",
                            a->valuestring);
            memcpy(nbuf, a->valuestring, nl);
            nbuf[nl] = '\0';
            name = nbuf;
            text = eq + 1;
        } else {
            name = a->string;
            text = NULL;
        }
        int idx = 0;
        for (const cJSON *p = params != NULL ? params->child : NULL; p != NULL;
             p = p->next, idx++) {
            if (strcmp(p->string, name) == 0) {
                decl = p;
                break;
            }
        }
        if (decl == NULL)
            return fail(err, errlen, "unknown parameter \"%.64s\"", name);
        if (values[idx] != NULL)
            return fail(err, errlen, "parameter \"%s\": given twice", name);
        if (text == NULL &&
            (rc = value_text(name, decl, a, ibuf, sizeof(ibuf), &text, err, errlen)) != 0)
            return rc;
        if ((rc = check_value(name, decl, text, &values[idx], err, errlen)) != 0)
            return rc;
    }
    /* defaults and required */
    int idx = 0;
    for (const cJSON *p = params != NULL ? params->child : NULL; p != NULL; p = p->next, idx++) {
        if (values[idx] != NULL)
            continue;
        const cJSON *def = cJSON_GetObjectItemCaseSensitive(p, "default");
        if (def != NULL) {
            const char *text;
            if ((rc = value_text(p->string, p, def, ibuf, sizeof(ibuf), &text, err, errlen)) != 0)
                return rc;
            if ((rc = check_value(p->string, p, text, &values[idx], err, errlen)) != 0)
                return rc;
        } else if (flag(p, "required")) {
            return fail(err, errlen, "parameter \"%s\": required", p->string);
        }
    }
    return 0;
}

static void free_values(char **values, int n)
{
    if (values == NULL)
        return;
    for (int i = 0; i < n; i++)
        free(values[i]);
    free(values);
}

int pc_tmpl_check_args(const cJSON *params, const cJSON *args, char *err, size_t errlen)
{
    char **values = NULL;
    int n = 0;
    if (params != NULL && !cJSON_IsObject(params))
        return fail(err, errlen, "template parameters: must be an object");
    int rc = resolve_args(params, args, &values, &n, err, errlen);
    free_values(values, n);
    return rc;
}

/* ------------------------------------------------------------ placeholders */

/*
 * Find the next placeholder in @p s from @p from: "{ident}" not preceded by
 * '$'. @return its start, with the identifier at start+1 of *idlen bytes, or
 * NULL.
 */
static const char *next_placeholder(const char *s, const char *from, size_t *idlen)
{
    for (const char *p = strchr(from, '{'); p != NULL; p = strchr(p + 1, '{')) {
        if (p > s && p[-1] == '$')
            continue;
        const char *q = p + 1;
        while ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') ||
               *q == '_')
            q++;
        if (*q == '}' && is_ident(p + 1, (size_t)(q - p - 1))) {
            *idlen = (size_t)(q - p - 1);
            return p;
        }
    }
    return NULL;
}

static int param_index(const cJSON *params, const char *id, size_t len)
{
    int i = 0;
    for (const cJSON *p = params != NULL ? params->child : NULL; p != NULL; p = p->next, i++)
        if (strlen(p->string) == len && memcmp(p->string, id, len) == 0)
            return i;
    return -1;
}

/* Substitute into one element; *out NULL (rc 0) means "drop this element". */
static int substitute(const char *elem, const cJSON *params, char *const *values, char **out,
                      char *err, size_t errlen)
{
    size_t idlen;
    const char *ph = next_placeholder(elem, elem, &idlen);
    *out = NULL;
    if (ph == elem && elem[idlen + 2] == '\0') {
        int i = param_index(params, elem + 1, idlen);
        if (i >= 0 && values[i] == NULL)
            return 0; /* an absent optional parameter standing alone */
    }
    size_t cap = strlen(elem) + 1, len = 0;
    for (const char *p = elem; (ph = next_placeholder(elem, p, &idlen)) != NULL;
         p = ph + idlen + 2) {
        int i = param_index(params, ph + 1, idlen);
        if (i >= 0 && values[i] != NULL)
            cap += strlen(values[i]);
    }
    if (cap > ELEM_MAX)
        return fail(err, errlen, "argv element longer than %d bytes after substitution", ELEM_MAX);
    char *d = malloc(cap);
    if (d == NULL)
        return PC_ENOMEM;
    const char *p = elem;
    while ((ph = next_placeholder(elem, p, &idlen)) != NULL) {
        memcpy(d + len, p, (size_t)(ph - p));
        len += (size_t)(ph - p);
        int i = param_index(params, ph + 1, idlen);
        if (i < 0) { /* not ours: keep the text */
            memcpy(d + len, ph, idlen + 2);
            len += idlen + 2;
        } else if (values[i] != NULL) {
            size_t vl = strlen(values[i]);
            memcpy(d + len, values[i], vl);
            len += vl;
        }
        p = ph + idlen + 2;
    }
    size_t rest = strlen(p);
    memcpy(d + len, p, rest + 1);
    *out = d;
    return 0;
}

/* ------------------------------------------------------------ template sets */

static const char *const config_keys[] = {"templates", "limits_max", NULL};
static const char *const template_keys[] = {
    "argv",   "params",  "description", "timeout_s",   "pty",         "env", "cwd",
    "limits", "restart", "shell",       "request_env", "request_cwd", NULL};
static const char *const restart_keys[] = {"policy", "max_attempts", "backoff_ms", NULL};

static int check_param_decl(const char *tname, const cJSON *p, char *err, size_t errlen)
{
    char where[160];
    int rc;
    snprintf(where, sizeof(where), "template \"%s\": parameter ", tname);
    if (!is_ident(p->string, strlen(p->string)))
        return fail(err, errlen, "%s\"%.64s\": invalid name (allowed: [A-Za-z_][A-Za-z0-9_]*)",
                    where, p->string);
    if (!cJSON_IsObject(p))
        return fail(err, errlen, "%s\"%s\": must be an object", where, p->string);
    snprintf(where, sizeof(where), "template \"%s\": parameter \"%s\": ", tname, p->string);
    if ((rc = check_keys(p, param_keys, 1, where, err, errlen)) != 0)
        return rc;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "type");
    if (t != NULL && (!cJSON_IsString(t) ||
                      (strcmp(t->valuestring, "string") != 0 &&
                       strcmp(t->valuestring, "int") != 0 && strcmp(t->valuestring, "bool") != 0)))
        return fail(err, errlen, "%s\"type\": must be \"string\", \"int\" or \"bool\"", where);
    enum ptype pt = param_type(p);
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
    if (pat != NULL) {
        regex_t re;
        if (pt != P_STRING || !cJSON_IsString(pat))
            return fail(err, errlen, "%s\"pattern\": only a string, for string parameters", where);
        int e = regcomp(&re, pat->valuestring, REG_EXTENDED);
        if (e != 0) {
            char msg[128];
            regerror(e, &re, msg, sizeof(msg));
            return fail(err, errlen, "%s\"pattern\": %s", where, msg);
        }
        regfree(&re);
    }
    static const char *const bools[] = {"required", "allow_dash", "allow_dotdot", NULL};
    for (int i = 0; bools[i] != NULL; i++) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(p, bools[i]);
        if (b != NULL && !cJSON_IsBool(b))
            return fail(err, errlen, "%s\"%s\": must be true or false", where, bools[i]);
    }
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(p, "description");
    if (desc != NULL && !cJSON_IsString(desc))
        return fail(err, errlen, "%s\"description\": must be a string", where);
    long v;
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(p, "min");
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(p, "max");
    if ((mn != NULL || mx != NULL) && pt != P_INT)
        return fail(err, errlen, "%s\"min\"/\"max\": only for int parameters", where);
    if ((mn != NULL && !get_int(mn, -LIMIT_MAX - 1, LIMIT_MAX, &v)) ||
        (mx != NULL && !get_int(mx, -LIMIT_MAX - 1, LIMIT_MAX, &v)))
        return fail(err, errlen, "%s\"min\"/\"max\": must be integers", where);
    const cJSON *def = cJSON_GetObjectItemCaseSensitive(p, "default");
    if (def != NULL && flag(p, "required"))
        return fail(err, errlen, "%s\"required\" and \"default\" exclude each other", where);
    if (def != NULL) {
        char ibuf[32], sub[256], *out = NULL;
        const char *text;
        if (value_text(p->string, p, def, ibuf, sizeof(ibuf), &text, sub, sizeof(sub)) != 0 ||
            check_value(p->string, p, text, &out, sub, sizeof(sub)) != 0)
            return fail(err, errlen, "%s\"default\": %s", where, sub);
        free(out);
    }
    return 0;
}

static int check_template(const cJSON *t, char *err, size_t errlen)
{
    char where[128];
    int rc;
    const char *name = t->string;
    if (!template_name_valid(name))
        return fail(err, errlen,
                    "template \"%.64s\": invalid name (allowed: 1-%d bytes of A-Z "
                    "a-z 0-9 _ . -)",
                    name, PC_TMPL_NAME_MAX);
    if (!cJSON_IsObject(t))
        return fail(err, errlen, "template \"%s\": must be an object", name);
    snprintf(where, sizeof(where), "template \"%s\": ", name);
    if ((rc = check_keys(t, template_keys, 1, where, err, errlen)) != 0)
        return rc;

    const cJSON *params = cJSON_GetObjectItemCaseSensitive(t, "params");
    if (params != NULL) {
        if (!cJSON_IsObject(params))
            return fail(err, errlen, "%s\"params\": must be an object", where);
        for (const cJSON *p = params->child; p != NULL; p = p->next) {
            if (is_comment_key(p->string))
                return fail(err, errlen, "%sparameter \"%s\": names may not start with '_'", where,
                            p->string);
            if ((rc = check_param_decl(name, p, err, errlen)) != 0)
                return rc;
            for (const cJSON *q = p->next; q != NULL; q = q->next)
                if (strcmp(p->string, q->string) == 0)
                    return fail(err, errlen, "%sparameter \"%s\": declared twice", where,
                                p->string);
        }
    }

    const cJSON *argv = cJSON_GetObjectItemCaseSensitive(t, "argv");
    int n = cJSON_GetArraySize(argv);
    if (!cJSON_IsArray(argv) || n < 1 || n > PC_JOB_ARGV_MAX)
        return fail(err, errlen, "%s\"argv\": must be an array of 1-%d strings", where,
                    PC_JOB_ARGV_MAX);
    int i = 0;
    for (const cJSON *a = argv->child; a != NULL; a = a->next, i++) {
        if (!cJSON_IsString(a) || strlen(a->valuestring) > PC_JOB_ARG_LEN_MAX)
            return fail(err, errlen, "%s\"argv\"[%d]: must be a string of at most %d bytes", where,
                        i, PC_JOB_ARG_LEN_MAX);
        size_t idlen;
        for (const char *ph = a->valuestring;
             (ph = next_placeholder(a->valuestring, ph, &idlen)) != NULL; ph += idlen + 2) {
            if (param_index(params, ph + 1, idlen) < 0)
                return fail(err, errlen, "%s\"argv\"[%d]: {%.*s} is not a declared parameter",
                            where, i, (int)idlen, ph + 1);
        }
    }
    if (argv->child->valuestring[0] == '\0' || argv->child->valuestring[0] == '{')
        return fail(err, errlen, "%s\"argv\"[0]: must be a fixed program name", where);

    const cJSON *c;
    long v;
    if ((c = cJSON_GetObjectItemCaseSensitive(t, "description")) != NULL && !cJSON_IsString(c))
        return fail(err, errlen, "%s\"description\": must be a string", where);
    if ((c = cJSON_GetObjectItemCaseSensitive(t, "timeout_s")) != NULL &&
        !get_int(c, 1, PC_JOB_TIMEOUT_MAX, &v))
        return fail(err, errlen, "%s\"timeout_s\": must be an integer 1..%d", where,
                    PC_JOB_TIMEOUT_MAX);
    if ((c = cJSON_GetObjectItemCaseSensitive(t, "pty")) != NULL && !cJSON_IsBool(c))
        return fail(err, errlen, "%s\"pty\": must be true or false", where);
    if ((c = cJSON_GetObjectItemCaseSensitive(t, "shell")) != NULL && !cJSON_IsBool(c))
        return fail(err, errlen, "%s\"shell\": must be true or false", where);
    if ((c = cJSON_GetObjectItemCaseSensitive(t, "cwd")) != NULL &&
        (!cJSON_IsString(c) || c->valuestring[0] == '\0'))
        return fail(err, errlen, "%s\"cwd\": must be a non-empty string", where);
    if ((c = cJSON_GetObjectItemCaseSensitive(t, "env")) != NULL &&
        (rc = check_env_object(c, where, err, errlen)) != 0)
        return rc;
    if ((c = cJSON_GetObjectItemCaseSensitive(t, "request_cwd")) != NULL && !cJSON_IsBool(c))
        return fail(err, errlen, "%s\"request_cwd\": must be true or false", where);
    if ((c = cJSON_GetObjectItemCaseSensitive(t, "request_env")) != NULL) {
        int ok = cJSON_IsBool(c);
        if (cJSON_IsArray(c)) {
            ok = 1;
            for (const cJSON *e = c->child; e != NULL; e = e->next)
                ok = ok && cJSON_IsString(e) && env_name_valid(e->valuestring);
        }
        if (!ok)
            return fail(err, errlen,
                        "%s\"request_env\": must be true, false or an array of variable names",
                        where);
    }
    if ((c = cJSON_GetObjectItemCaseSensitive(t, "limits")) != NULL) {
        struct pc_limits l;
        char w2[160];
        snprintf(w2, sizeof(w2), "%s\"limits\": ", where);
        if ((rc = parse_limits(c, 0, &l, NULL, w2, err, errlen)) != 0)
            return rc;
    }
    if ((c = cJSON_GetObjectItemCaseSensitive(t, "restart")) != NULL) {
        char w2[160];
        snprintf(w2, sizeof(w2), "%s\"restart\": ", where);
        if (!cJSON_IsObject(c))
            return fail(err, errlen, "%smust be an object", w2);
        if ((rc = check_keys(c, restart_keys, 1, w2, err, errlen)) != 0)
            return rc;
        const cJSON *pol = cJSON_GetObjectItemCaseSensitive(c, "policy");
        if (pol != NULL && (!cJSON_IsString(pol) || (strcmp(pol->valuestring, "never") != 0 &&
                                                     strcmp(pol->valuestring, "on-failure") != 0)))
            return fail(err, errlen, "%s\"policy\": must be \"never\" or \"on-failure\"", w2);
        const cJSON *ma = cJSON_GetObjectItemCaseSensitive(c, "max_attempts");
        if (ma != NULL && !get_int(ma, 1, ATTEMPTS_MAX, &v))
            return fail(err, errlen, "%s\"max_attempts\": must be an integer 1..%d", w2,
                        ATTEMPTS_MAX);
        const cJSON *bo = cJSON_GetObjectItemCaseSensitive(c, "backoff_ms");
        if (bo != NULL && !get_int(bo, 0, BACKOFF_MAX_MS, &v))
            return fail(err, errlen, "%s\"backoff_ms\": must be an integer 0..%d", w2,
                        BACKOFF_MAX_MS);
    }
    return 0;
}

struct pc_tmpl_set *pc_tmpl_set_parse(const char *json, size_t len, char *err, size_t errlen)
{
    cJSON *root = parse_json(json, len, PC_TMPL_FILE_MAX, "config", err, errlen);
    if (root == NULL)
        return NULL;
    struct pc_tmpl_set *ts = calloc(1, sizeof(*ts));
    if (ts == NULL) {
        fail(err, errlen, "config: out of memory");
        cJSON_Delete(root);
        return NULL;
    }
    ts->root = root;
    if (!cJSON_IsObject(root)) {
        fail(err, errlen, "config: must be a JSON object");
        goto bad;
    }
    if (check_keys(root, config_keys, 1, "config: ", err, errlen) != 0)
        goto bad;
    const cJSON *tpls = cJSON_GetObjectItemCaseSensitive(root, "templates");
    if (tpls != NULL) {
        if (!cJSON_IsObject(tpls)) {
            fail(err, errlen, "config: \"templates\": must be an object");
            goto bad;
        }
        for (const cJSON *t = tpls->child; t != NULL; t = t->next) {
            if (is_comment_key(t->string))
                continue;
            if (check_template(t, err, errlen) != 0)
                goto bad;
            for (const cJSON *u = t->next; u != NULL; u = u->next)
                if (strcmp(t->string, u->string) == 0) {
                    fail(err, errlen, "template \"%s\": defined twice", t->string);
                    goto bad;
                }
        }
        ts->templates = tpls;
    }
    if (parse_limits(cJSON_GetObjectItemCaseSensitive(root, "limits_max"), 1, &ts->max,
                     &ts->max_timeout_s, "config: \"limits_max\": ", err, errlen) != 0)
        goto bad;
    return ts;
bad:
    pc_tmpl_set_free(ts);
    return NULL;
}

struct pc_tmpl_set *pc_tmpl_set_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fail(err, errlen, "config %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(PC_TMPL_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        fail(err, errlen, "config %s: out of memory", path);
        return NULL;
    }
    size_t n = fread(buf, 1, PC_TMPL_FILE_MAX + 1, f);
    int rerr = ferror(f);
    fclose(f);
    struct pc_tmpl_set *ts = NULL;
    if (rerr)
        fail(err, errlen, "config %s: read error", path);
    else if (n > PC_TMPL_FILE_MAX)
        fail(err, errlen, "config %s: larger than %d bytes", path, PC_TMPL_FILE_MAX);
    else {
        char sub[400];
        ts = pc_tmpl_set_parse(buf, n, sub, sizeof(sub));
        if (ts == NULL)
            fail(err, errlen, "config %s: %s", path, sub);
    }
    free(buf);
    return ts;
}

void pc_tmpl_set_free(struct pc_tmpl_set *ts)
{
    if (ts == NULL)
        return;
    cJSON_Delete(ts->root);
    free(ts);
}

int pc_tmpl_set_count(const struct pc_tmpl_set *ts)
{
    int n = 0;
    if (ts == NULL || ts->templates == NULL)
        return 0;
    for (const cJSON *t = ts->templates->child; t != NULL; t = t->next)
        n += !is_comment_key(t->string);
    return n;
}

static const cJSON *find_template(const struct pc_tmpl_set *ts, const char *name)
{
    if (ts == NULL || ts->templates == NULL || is_comment_key(name))
        return NULL;
    return cJSON_GetObjectItemCaseSensitive(ts->templates, name);
}

cJSON *pc_tmpl_set_describe(const struct pc_tmpl_set *ts)
{
    static const char *const copy_keys[] = {"type",        "pattern", "default",    "required",
                                            "min",         "max",     "allow_dash", "allow_dotdot",
                                            "description", NULL};
    cJSON *out = cJSON_CreateObject();
    if (out == NULL || ts == NULL || ts->templates == NULL)
        return out;
    for (const cJSON *t = ts->templates->child; t != NULL; t = t->next) {
        if (is_comment_key(t->string))
            continue;
        cJSON *d = cJSON_AddObjectToObject(out, t->string);
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(t, "description");
        if (d == NULL ||
            cJSON_AddStringToObject(d, "description",
                                    cJSON_IsString(desc) ? desc->valuestring : "") == NULL)
            goto oom;
        /* what a request may set besides params (the gateway refuses the rest early) */
        const cJSON *rcwd = cJSON_GetObjectItemCaseSensitive(t, "request_cwd");
        const cJSON *renv = cJSON_GetObjectItemCaseSensitive(t, "request_env");
        cJSON *envd =
            cJSON_IsArray(renv) ? cJSON_Duplicate(renv, 1) : cJSON_CreateBool(cJSON_IsTrue(renv));
        if (envd == NULL)
            goto oom;
        cJSON_AddItemToObject(d, "request_env", envd);
        if (cJSON_AddBoolToObject(d, "request_cwd", cJSON_IsTrue(rcwd)) == NULL)
            goto oom;
        cJSON *ps = cJSON_AddObjectToObject(d, "params");
        if (ps == NULL)
            goto oom;
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(t, "params");
        for (const cJSON *p = params != NULL ? params->child : NULL; p != NULL; p = p->next) {
            cJSON *pd = cJSON_AddObjectToObject(ps, p->string);
            if (pd == NULL)
                goto oom;
            enum ptype pt = param_type(p);
            if (cJSON_AddStringToObject(pd, "type",
                                        pt == P_INT    ? "int"
                                        : pt == P_BOOL ? "bool"
                                                       : "string") == NULL)
                goto oom;
            if (pt == P_STRING && cJSON_GetObjectItemCaseSensitive(p, "pattern") == NULL &&
                cJSON_AddStringToObject(pd, "pattern", DEFAULT_PATTERN) == NULL)
                goto oom;
            for (int i = 1; copy_keys[i] != NULL; i++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, copy_keys[i]);
                cJSON *dup;
                if (v == NULL)
                    continue;
                if ((dup = cJSON_Duplicate(v, 1)) == NULL)
                    goto oom;
                cJSON_AddItemToObject(pd, copy_keys[i], dup);
            }
        }
    }
    return out;
oom:
    cJSON_Delete(out);
    return NULL;
}

/* ------------------------------------------------------------ plans */

struct env_list {
    char **v;
    int n;
};

/* Set NAME=value, replacing an earlier definition of NAME. */
static int env_set(struct env_list *e, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    char *s = malloc(nl + vl + 2);
    if (s == NULL)
        return PC_ENOMEM;
    memcpy(s, name, nl);
    s[nl] = '=';
    memcpy(s + nl + 1, value, vl + 1);
    for (int i = 0; i < e->n; i++) {
        if (strncmp(e->v[i], name, nl) == 0 && e->v[i][nl] == '=') {
            free(e->v[i]);
            e->v[i] = s;
            return 0;
        }
    }
    if (e->n >= ENV_MAX) {
        free(s);
        return PC_ETOOBIG;
    }
    e->v[e->n++] = s;
    return 0;
}

/*
 * Variables a request may not set on a template job: they change which code
 * runs (loader, interpreters, shells) or who the job claims to be.
 */
static int env_denied(const char *name)
{
    static const char *const exact[] = {"PATH",
                                        "IFS",
                                        "ENV",
                                        "BASH_ENV",
                                        "SHELLOPTS",
                                        "BASHOPTS",
                                        "PS4",
                                        "CDPATH",
                                        "GLOBIGNORE",
                                        "GCONV_PATH",
                                        "GETCONF_DIR",
                                        "HOSTALIASES",
                                        "LOCALDOMAIN",
                                        "RES_OPTIONS",
                                        "NLSPATH",
                                        "GLIBC_TUNABLES",
                                        "NODE_OPTIONS",
                                        "NODE_PATH",
                                        "PYTHONPATH",
                                        "PYTHONHOME",
                                        "PYTHONSTARTUP",
                                        "PYTHONINSPECT",
                                        "PERL5LIB",
                                        "PERL5OPT",
                                        "PERLLIB",
                                        "RUBYOPT",
                                        "RUBYLIB",
                                        "JAVA_TOOL_OPTIONS",
                                        "_JAVA_OPTIONS",
                                        "HOME",
                                        "XDG_CONFIG_HOME",
                                        "EDITOR",
                                        "VISUAL",
                                        "PAGER",
                                        "SHELL",
                                        "PROMPT_COMMAND",
                                        "MFLAGS",
                                        "GNUMAKEFLAGS",
                                        "PYTHONBREAKPOINT",
                                        "PYTHONUSERBASE",
                                        "PERL5DB",
                                        "LUA_INIT",
                                        "LUA_PATH",
                                        "LUA_CPATH",
                                        "CLASSPATH",
                                        "GEM_HOME",
                                        "GEM_PATH",
                                        "BUNDLE_GEMFILE",
                                        "TMPDIR",
                                        "SSL_CERT_FILE",
                                        "SSL_CERT_DIR",
                                        "http_proxy",
                                        "https_proxy",
                                        "HTTP_PROXY",
                                        "HTTPS_PROXY",
                                        "ALL_PROXY",
                                        "all_proxy",
                                        NULL};
    static const char *const prefixes[] = {"LD_",     "MALLOC_",    "PIPECAST_",   "GIT_",
                                           "MAKE",    "BASH_FUNC_", "DYLD_",       "SSH_",
                                           "CARGO_",  "RUSTC",      "NPM_CONFIG_", "npm_config_",
                                           "DOCKER_", "PYTHONWARN", "LUA_INIT_",   NULL};
    for (int i = 0; exact[i] != NULL; i++)
        if (strcmp(name, exact[i]) == 0)
            return 1;
    for (int i = 0; prefixes[i] != NULL; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

static int request_env_allowed(const cJSON *tmpl, const char *name, char *err, size_t errlen)
{
    if (tmpl == NULL)
        return 0; /* any command: the requester controls everything anyway */
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(tmpl, "request_env");
    if (re == NULL || cJSON_IsFalse(re)) /* least privilege: none unless the template says so */
        return fail(err, errlen, "\"env\": template \"%s\" takes no environment variables",
                    tmpl->string);
    if (cJSON_IsArray(re)) {
        for (const cJSON *e = re->child; e != NULL; e = e->next)
            if (strcmp(e->valuestring, name) == 0)
                return 0;
        return fail(err, errlen, "\"env\": template \"%s\" does not take \"%s\"", tmpl->string,
                    name);
    }
    if (env_denied(name))
        return fail(err, errlen, "\"env\": \"%s\" may not be set by a request", name);
    return 0;
}

static int copy_argv(const cJSON *argv, char ***out)
{
    int n = cJSON_GetArraySize(argv), i = 0;
    char **v = calloc((size_t)n + 1, sizeof(char *));
    if (v == NULL)
        return PC_ENOMEM;
    *out = v;
    for (const cJSON *a = argv->child; a != NULL; a = a->next)
        if ((v[i++] = xstrdup(a->valuestring)) == NULL)
            return PC_ENOMEM;
    return 0;
}

static void free_strv(char **v)
{
    if (v == NULL)
        return;
    for (char **p = v; *p != NULL; p++)
        free(*p);
    free(v);
}

static int build_template_argv(const cJSON *tmpl, const cJSON *args, char ***out, char *err,
                               size_t errlen)
{
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(tmpl, "params");
    const cJSON *argv = cJSON_GetObjectItemCaseSensitive(tmpl, "argv");
    char **values = NULL;
    int nv = 0, rc;
    char sub[256];
    if ((rc = resolve_args(params, args, &values, &nv, sub, sizeof(sub))) != 0) {
        free_values(values, nv);
        return fail(err, errlen, "template \"%s\": %s", tmpl->string, sub);
    }
    int n = cJSON_GetArraySize(argv), k = 0;
    char **v = calloc((size_t)n + 1, sizeof(char *));
    if (v == NULL) {
        free_values(values, nv);
        return PC_ENOMEM;
    }
    *out = v;
    for (const cJSON *a = argv->child; a != NULL; a = a->next) {
        char *s = NULL;
        if ((rc = substitute(a->valuestring, params, values, &s, err, errlen)) != 0)
            break;
        if (s != NULL)
            v[k++] = s;
    }
    free_values(values, nv);
    return rc;
}

void pc_job_plan_free(struct pc_job_plan *plan)
{
    if (plan == NULL)
        return;
    free_strv(plan->argv);
    free_strv(plan->envp);
    free(plan->cwd);
    free(plan->template);
    free(plan->stdin_data);
    memset(plan, 0, sizeof(*plan));
}

int pc_job_plan_build(const struct pc_tmpl_set *ts, int allow_any, const cJSON *req,
                      const struct pc_job_ctx *ctx, struct pc_job_plan *plan, char *err,
                      size_t errlen)
{
    int rc;
    const cJSON *tmpl = NULL, *c;
    struct pc_limits rl, tl;
    long tt = 0, rt = 0;
    struct env_list env = {NULL, 0};

    memset(plan, 0, sizeof(*plan));
    if ((rc = pc_job_request_check(req, err, errlen)) != 0)
        return rc;

    const cJSON *rargv = cJSON_GetObjectItemCaseSensitive(req, "argv");
    if (rargv != NULL) {
        if (!allow_any)
            return fail(err, errlen,
                        "arbitrary commands are not allowed on this runner "
                        "(only templates; see --allow-any-command)");
        if ((rc = copy_argv(rargv, &plan->argv)) != 0)
            goto oom;
    } else {
        const char *name = cJSON_GetObjectItemCaseSensitive(req, "template")->valuestring;
        tmpl = find_template(ts, name);
        if (tmpl == NULL)
            return fail(err, errlen, "unknown template \"%s\"", name);
        if ((plan->template = xstrdup(name)) == NULL)
            goto oom;
        rc = build_template_argv(tmpl, cJSON_GetObjectItemCaseSensitive(req, "args"), &plan->argv,
                                 err, errlen);
        if (rc != 0)
            goto out;
        plan->shell = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tmpl, "shell"));
    }

    /* environment */
    env.v = calloc(ENV_MAX + 1, sizeof(char *));
    if (env.v == NULL)
        goto oom;
    const cJSON *tenv = tmpl != NULL ? cJSON_GetObjectItemCaseSensitive(tmpl, "env") : NULL;
    const cJSON *renv = cJSON_GetObjectItemCaseSensitive(req, "env");
    for (const cJSON *e = renv != NULL ? renv->child : NULL; e != NULL; e = e->next)
        if ((rc = request_env_allowed(tmpl, e->string, err, errlen)) != 0)
            goto out;
    if ((rc = env_set(&env, "PATH", ENV_PATH + 5)) != 0 ||
        (rc = env_set(&env, "HOME", ctx != NULL && ctx->home != NULL ? ctx->home : "/")) != 0 ||
        (rc = env_set(&env, "LANG", "C.UTF-8")) != 0)
        goto oom;
    for (const cJSON *e = tenv != NULL ? tenv->child : NULL; e != NULL; e = e->next)
        if ((rc = env_set(&env, e->string, e->valuestring)) != 0)
            goto oom;
    for (const cJSON *e = renv != NULL ? renv->child : NULL; e != NULL; e = e->next)
        if ((rc = env_set(&env, e->string, e->valuestring)) != 0)
            goto oom;
    if (ctx != NULL && ctx->job_id != NULL &&
        (rc = env_set(&env, "PIPECAST_JOB_ID", ctx->job_id)) != 0)
        goto oom;
    if (ctx != NULL && ctx->channel != NULL &&
        (rc = env_set(&env, "PIPECAST_CHANNEL", ctx->channel)) != 0)
        goto oom;
    plan->envp = env.v;
    env.v = NULL;

    /* cwd, pty, stdin */
    c = cJSON_GetObjectItemCaseSensitive(req, "cwd");
    if (c != NULL && tmpl != NULL &&
        !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tmpl, "request_cwd"))) {
        rc = fail(err, errlen, "\"cwd\": template \"%s\" does not take a working directory",
                  tmpl->string);
        goto out;
    }
    if (c == NULL && tmpl != NULL)
        c = cJSON_GetObjectItemCaseSensitive(tmpl, "cwd");
    if (c != NULL && (plan->cwd = xstrdup(c->valuestring)) == NULL)
        goto oom;
    c = cJSON_GetObjectItemCaseSensitive(req, "pty");
    if (c == NULL && tmpl != NULL)
        c = cJSON_GetObjectItemCaseSensitive(tmpl, "pty");
    plan->pty = cJSON_IsTrue(c);
    c = cJSON_GetObjectItemCaseSensitive(req, "stdin");
    if (c != NULL) {
        plan->stdin_len = strlen(c->valuestring);
        if ((plan->stdin_data = xstrdup(c->valuestring)) == NULL)
            goto oom;
    }

    /* limits and timeout: the tightest of template, request and limits_max */
    parse_limits(cJSON_GetObjectItemCaseSensitive(req, "limits"), 0, &rl, NULL, "", NULL, 0);
    memset(&tl, 0, sizeof(tl));
    if (tmpl != NULL) {
        parse_limits(cJSON_GetObjectItemCaseSensitive(tmpl, "limits"), 0, &tl, NULL, "", NULL, 0);
        get_int(cJSON_GetObjectItemCaseSensitive(tmpl, "timeout_s"), 1, PC_JOB_TIMEOUT_MAX, &tt);
    }
    get_int(cJSON_GetObjectItemCaseSensitive(req, "timeout_s"), 1, PC_JOB_TIMEOUT_MAX, &rt);
    const struct pc_limits *mx = ts != NULL ? &ts->max : &(struct pc_limits){0, 0, 0, 0};
    plan->limits.cpu_s = min3(tl.cpu_s, rl.cpu_s, mx->cpu_s);
    plan->limits.as_mb = min3(tl.as_mb, rl.as_mb, mx->as_mb);
    plan->limits.nofile = min3(tl.nofile, rl.nofile, mx->nofile);
    plan->limits.nproc = min3(tl.nproc, rl.nproc, mx->nproc);
    plan->timeout_s = min3(tt, rt, ts != NULL ? ts->max_timeout_s : 0);

    /* restart policy (templates only) */
    plan->restart = PC_RESTART_NEVER;
    plan->max_attempts = 1;
    plan->backoff_ms = 1000;
    c = tmpl != NULL ? cJSON_GetObjectItemCaseSensitive(tmpl, "restart") : NULL;
    if (c != NULL) {
        const cJSON *pol = cJSON_GetObjectItemCaseSensitive(c, "policy");
        long v;
        if (cJSON_IsString(pol) && strcmp(pol->valuestring, "on-failure") == 0) {
            plan->restart = PC_RESTART_ON_FAILURE;
            plan->max_attempts = 3;
            if (get_int(cJSON_GetObjectItemCaseSensitive(c, "max_attempts"), 1, ATTEMPTS_MAX, &v))
                plan->max_attempts = (int)v;
        }
        if (get_int(cJSON_GetObjectItemCaseSensitive(c, "backoff_ms"), 0, BACKOFF_MAX_MS, &v))
            plan->backoff_ms = (int)v;
    }
    return 0;

oom:
    if (rc == PC_ETOOBIG)
        fail(err, errlen, "\"env\": more than %d variables", ENV_MAX);
    else {
        rc = PC_ENOMEM;
        fail(err, errlen, "out of memory");
    }
out:
    if (env.v != NULL) {
        for (int i = 0; i < env.n; i++)
            free(env.v[i]);
        free(env.v);
    }
    pc_job_plan_free(plan);
    return rc;
}
