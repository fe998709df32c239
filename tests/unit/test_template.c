/* test_template.c -- job requests, template configs, parameter checks,
 * argv substitution (injection stays inert), env and limits of a plan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipecast/error.h"
#include "pipecast/template.h"

static const char *config_json =
    "{\"_comment\": \"test\","
    " \"templates\": {"
    "  \"build\": {\"argv\": [\"make\", \"-C\", \"{dir}\", \"-j{jobs}\", \"{target}\"],"
    "   \"params\": {\"dir\": {\"type\": \"string\", \"pattern\": \"^[A-Za-z0-9_./-]+$\","
    "                         \"default\": \".\"},"
    "              \"jobs\": {\"type\": \"int\", \"min\": 1, \"max\": 64, \"default\": 2},"
    "              \"target\": {\"type\": \"string\"}},"
    "   \"description\": \"Build a directory\", \"timeout_s\": 600,"
    "   \"env\": {\"LANG\": \"C\", \"CC\": \"gcc\"}, \"cwd\": \"/srv\", \"request_env\": true,"
    "   \"limits\": {\"cpu_s\": 600, \"as_mb\": 2048, \"nofile\": 1024}},"
    "  \"echo\": {\"argv\": [\"echo\", \"msg={msg}\", \"{flag}\"],"
    "   \"params\": {\"msg\": {\"required\": true, \"pattern\": \"^.*$\"},"
    "              \"flag\": {\"type\": \"bool\", \"default\": false}}},"
    "  \"worker\": {\"argv\": [\"sh\", \"-c\", \"exec ./worker --queue {queue} ${HOME}\"],"
    "   \"shell\": true, \"request_env\": [\"DEBUG\"],"
    "   \"params\": {\"queue\": {\"type\": \"string\", \"pattern\": \"^[a-z]+$\","
    "                           \"required\": true}},"
    "   \"restart\": {\"policy\": \"on-failure\", \"max_attempts\": 5, \"backoff_ms\": 250}},"
    "  \"path\": {\"argv\": [\"ls\", \"{p}\"],"
    "   \"params\": {\"p\": {\"allow_dash\": true, \"allow_dotdot\": true}}}},"
    " \"limits_max\": {\"cpu_s\": 300, \"as_mb\": 4096, \"nproc\": 100, \"timeout_s\": 120}}";

struct fixture {
    struct pc_tmpl_set *ts;
    struct pc_job_plan plan;
    char err[512];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->ts = pc_tmpl_set_parse(config_json, strlen(config_json), f->err, sizeof(f->err));
    if (f->ts == NULL)
        fprintf(stderr, "config: %s\n", f->err);
    assert_non_null(f->ts);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pc_job_plan_free(&f->plan);
    pc_tmpl_set_free(f->ts);
    free(f);
    return 0;
}

/* Build a plan from request text; @return the rc (plan kept in f->plan). */
static int plan(struct fixture *f, int allow_any, const char *json)
{
    pc_job_plan_free(&f->plan);
    f->err[0] = '\0';
    cJSON *req = pc_job_request_parse(json, strlen(json), f->err, sizeof(f->err));
    if (req == NULL)
        return PC_EINVAL;
    struct pc_job_ctx ctx = {"00000000000000aa", "job:00000000000000aa", "/home/u"};
    int rc = pc_job_plan_build(f->ts, allow_any, req, &ctx, &f->plan, f->err, sizeof(f->err));
    cJSON_Delete(req);
    return rc;
}

static int argc_of(char **v)
{
    int n = 0;
    while (v[n] != NULL)
        n++;
    return n;
}

static const char *env_get(char **envp, const char *name)
{
    size_t nl = strlen(name);
    for (; *envp != NULL; envp++)
        if (strncmp(*envp, name, nl) == 0 && (*envp)[nl] == '=')
            return *envp + nl + 1;
    return NULL;
}

/* ------------------------------------------------------------ requests */

static void test_request_shape(void **state)
{
    (void)state;
    char err[256];
    static const struct {
        const char *json;
        const char *msg; /* substring of the error; NULL = accepted */
    } cases[] = {
        {"{\"argv\": [\"ls\", \"-l\"]}", NULL},
        {"{\"template\": \"build\", \"args\": {\"dir\": \"src\"}, \"channel\": \"a:b\","
         " \"session\": \"s1\", \"env\": {\"A_1\": \"x\"}, \"cwd\": \"/tmp\", \"timeout_s\": 60,"
         " \"stdin\": \"hi\", \"pty\": false, \"limits\": {\"cpu_s\": 10, \"as_mb\": 512,"
         " \"nofile\": 256, \"nproc\": 64}}",
         NULL},
        {"{\"template\": \"build\", \"args\": [\"dir=src\", \"jobs=3\"]}", NULL},
        {"[1]", "must be a JSON object"},
        {"{\"argv\": [\"ls\"", "invalid JSON"},
        {"{\"argv\": [\"ls\"]} x", "invalid JSON"},
        {"", "empty"},
        {"{}", "exactly one of"},
        {"{\"argv\": [\"ls\"], \"template\": \"x\"}", "exactly one of"},
        {"{\"argv\": [\"ls\"], \"bogus\": 1}", "\"bogus\": unknown key"},
        {"{\"argv\": [\"ls\"], \"argv\": [\"id\"]}", "duplicate key"},
        {"{\"argv\": []}", "\"argv\": must be an array of 1-256"},
        {"{\"argv\": [\"\"]}", "\"argv\"[0]: must not be empty"},
        {"{\"argv\": [\"ls\", 3]}", "\"argv\"[1]"},
        {"{\"argv\": [\"ls\", \"a\\u0000b\"]}", "NUL"},
        {"{\"argv\": [\"ls\", \"a\\\\u0000b\"]}", NULL}, /* an escaped backslash, not a NUL */
        {"{\"argv\": [\"ls\"], \"args\": {}}", "only with \"template\""},
        {"{\"template\": \"a b\"}", "\"template\""},
        {"{\"template\": \"t\", \"args\": [\"novalue\"]}", "name=value"},
        {"{\"template\": \"t\", \"args\": {\"a\": [1]}}", "string, number or bool"},
        {"{\"argv\": [\"ls\"], \"channel\": \"a b\"}", "\"channel\": invalid"},
        {"{\"argv\": [\"ls\"], \"session\": \"s/1\"}", "\"session\": invalid"},
        {"{\"argv\": [\"ls\"], \"env\": {\"1A\": \"x\"}}", "invalid variable name"},
        {"{\"argv\": [\"ls\"], \"env\": {\"A\": 1}}", "must be a string"},
        {"{\"argv\": [\"ls\"], \"timeout_s\": 0}", "\"timeout_s\""},
        {"{\"argv\": [\"ls\"], \"timeout_s\": 604801}", "\"timeout_s\""},
        {"{\"argv\": [\"ls\"], \"timeout_s\": 1.5}", "\"timeout_s\""},
        {"{\"argv\": [\"ls\"], \"pty\": 1}", "\"pty\""},
        {"{\"argv\": [\"ls\"], \"limits\": {\"cpu_s\": -1}}", "positive integer"},
        {"{\"argv\": [\"ls\"], \"limits\": {\"mem\": 1}}", "\"mem\": unknown key"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        cJSON *r = pc_job_request_parse(cases[i].json, strlen(cases[i].json), err, sizeof(err));
        if (cases[i].msg == NULL) {
            if (r == NULL)
                fail_msg("case %zu refused: %s", i, err);
        } else {
            if (r != NULL || strstr(err, cases[i].msg) == NULL)
                fail_msg("case %zu: expected \"%s\", got \"%s\"", i, cases[i].msg, err);
        }
        cJSON_Delete(r);
    }
}

/* ------------------------------------------------------------ configs */

static void test_config_errors(void **state)
{
    (void)state;
    char err[512];
    static const struct {
        const char *json;
        const char *msg;
    } cases[] = {
        {"{\"templates\": {\"t\": {\"argv\": [\"x\", \"{nope}\"]}}}",
         "{nope} is not a declared parameter"},
        {"{\"templates\": {\"t\": {\"argv\": []}}}", "\"argv\""},
        {"{\"templates\": {\"t\": {\"argv\": [\"{p}\"], \"params\": {\"p\": {}}}}}",
         "fixed program name"},
        {"{\"templates\": {\"t\": {\"argv\": [\"x\"], \"params\": {\"p\": {\"type\": "
         "\"float\"}}}}}",
         "\"type\""},
        {"{\"templates\": {\"t\": {\"argv\": [\"x\"], \"params\": {\"p\": {\"pattern\": \"(\"}}}}}",
         "\"pattern\""},
        {"{\"templates\": {\"t\": {\"argv\": [\"x\"], \"params\": {\"p\": {\"required\": true,"
         " \"default\": \"a\"}}}}}",
         "exclude each other"},
        {"{\"templates\": {\"t\": {\"argv\": [\"x\"], \"params\": {\"p\": {\"type\": \"int\","
         " \"max\": 3, \"default\": 9}}}}}",
         "\"default\": parameter \"p\": must be <= 3"},
        {"{\"templates\": {\"t\": {\"argv\": [\"x\"], \"params\": {\"p-q\": {}}}}}",
         "invalid name"},
        {"{\"templates\": {\"t\": {\"argv\": [\"x\"], \"bogus\": 1}}}", "\"bogus\": unknown key"},
        {"{\"templates\": {\"t\": {\"argv\": [\"x\"], \"restart\": {\"policy\": \"always\"}}}}",
         "\"policy\""},
        {"{\"templates\": {\"t\": {\"argv\": [\"x\"], \"limits\": {\"as_mb\": 0}}}}",
         "positive integer"},
        {"{\"templates\": {\"a b\": {\"argv\": [\"x\"]}}}", "invalid name"},
        {"{\"limits_max\": {\"timeout_s\": \"1\"}}", "positive integer"},
        {"{\"template\": {}}", "unknown key"},
        {"nope", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        struct pc_tmpl_set *ts =
            pc_tmpl_set_parse(cases[i].json, strlen(cases[i].json), err, sizeof(err));
        if (ts != NULL || strstr(err, cases[i].msg) == NULL)
            fail_msg("case %zu: expected \"%s\", got \"%s\"", i, cases[i].msg, err);
    }
    struct pc_tmpl_set *ts = pc_tmpl_set_load("/nonexistent/pipecast.json", err, sizeof(err));
    assert_null(ts);
    assert_non_null(strstr(err, "No such file"));
    ts = pc_tmpl_set_parse("{}", 2, err, sizeof(err));
    assert_non_null(ts);
    assert_int_equal(pc_tmpl_set_count(ts), 0);
    pc_tmpl_set_free(ts);
    pc_tmpl_set_free(NULL);
}

static void test_describe(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(pc_tmpl_set_count(f->ts), 4);
    cJSON *d = pc_tmpl_set_describe(f->ts);
    assert_non_null(d);
    char *s = cJSON_PrintUnformatted(d);
    assert_non_null(s);
    /* the public description names parameters, never the argv, env or cwd */
    assert_null(strstr(s, "make"));
    assert_null(strstr(s, "/srv"));
    assert_non_null(strstr(s, "\"description\":\"Build a directory\""));
    const cJSON *dir =
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "build"), "params"), "dir");
    assert_string_equal(cJSON_GetObjectItem(dir, "type")->valuestring, "string");
    assert_string_equal(cJSON_GetObjectItem(dir, "default")->valuestring, ".");
    const cJSON *target = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(d, "build"), "params"), "target");
    assert_string_equal(cJSON_GetObjectItem(target, "pattern")->valuestring,
                        "^[A-Za-z0-9_.,:@=+/-]*$");

    /* the gateway can check args against a heartbeat's description */
    char err[256];
    const cJSON *params = cJSON_GetObjectItem(cJSON_GetObjectItem(d, "build"), "params");
    cJSON *args = cJSON_Parse("{\"dir\": \"src\", \"jobs\": 4}");
    assert_int_equal(pc_tmpl_check_args(params, args, err, sizeof(err)), 0);
    cJSON_Delete(args);
    args = cJSON_Parse("{\"dir\": \"src;rm\"}");
    assert_int_equal(pc_tmpl_check_args(params, args, err, sizeof(err)), PC_EINVAL);
    assert_non_null(strstr(err, "does not match"));
    cJSON_Delete(args);
    args = cJSON_Parse("[\"jobs=65\"]");
    assert_int_equal(pc_tmpl_check_args(params, args, err, sizeof(err)), PC_EINVAL);
    assert_string_equal(err, "parameter \"jobs\": must be <= 64");
    cJSON_Delete(args);
    free(s);
    cJSON_Delete(d);
}

/* ------------------------------------------------------------ plans */

static void test_plan_template(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(plan(f, 0,
                          "{\"template\": \"build\", \"args\": {\"dir\": \"src/lib\","
                          " \"jobs\": \"008\", \"target\": \"all\"},"
                          " \"env\": {\"DEBUG\": \"1\", \"CC\": \"clang\"},"
                          " \"limits\": {\"cpu_s\": 1000, \"nofile\": 10}}"),
                     0);
    char **a = f->plan.argv;
    assert_int_equal(argc_of(a), 5);
    assert_string_equal(a[0], "make");
    assert_string_equal(a[1], "-C");
    assert_string_equal(a[2], "src/lib");
    assert_string_equal(a[3], "-j8");
    assert_string_equal(a[4], "all");
    assert_string_equal(f->plan.template, "build");
    assert_string_equal(f->plan.cwd, "/srv");
    assert_int_equal(f->plan.pty, 0);
    assert_int_equal(f->plan.shell, 0);
    /* env: fixed base, template, request, then the job's own */
    char **e = f->plan.envp;
    assert_string_equal(env_get(e, "PATH"), "/usr/local/bin:/usr/bin:/bin");
    assert_string_equal(env_get(e, "HOME"), "/home/u");
    assert_string_equal(env_get(e, "LANG"), "C");
    assert_string_equal(env_get(e, "CC"), "clang");
    assert_string_equal(env_get(e, "DEBUG"), "1");
    assert_string_equal(env_get(e, "PIPECAST_JOB_ID"), "00000000000000aa");
    assert_string_equal(env_get(e, "PIPECAST_CHANNEL"), "job:00000000000000aa");
    assert_null(env_get(e, "USER"));
    assert_int_equal(argc_of(e), 7);
    /* limits: smallest of template (600/2048/1024), request (1000/-/10), max (300/4096/100) */
    assert_int_equal(f->plan.limits.cpu_s, 300);
    assert_int_equal(f->plan.limits.as_mb, 2048);
    assert_int_equal(f->plan.limits.nofile, 10);
    assert_int_equal(f->plan.limits.nproc, 100);
    assert_int_equal(f->plan.timeout_s, 120);
    assert_int_equal(f->plan.restart, PC_RESTART_NEVER);
    assert_int_equal(f->plan.max_attempts, 1);
}

static void test_plan_defaults_and_optional(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(plan(f, 0, "{\"template\": \"build\"}"), 0);
    assert_int_equal(argc_of(f->plan.argv), 4); /* "{target}" absent: dropped */
    assert_string_equal(f->plan.argv[2], ".");
    assert_string_equal(f->plan.argv[3], "-j2");

    assert_int_equal(plan(f, 0,
                          "{\"template\": \"echo\", \"args\": [\"msg=a=b c\","
                          " \"flag=true\"], \"timeout_s\": 5, \"pty\": true,"
                          " \"stdin\": \"in\\n\"}"),
                     0);
    assert_string_equal(f->plan.argv[1], "msg=a=b c");
    assert_string_equal(f->plan.argv[2], "true");
    assert_int_equal(f->plan.timeout_s, 5);
    assert_int_equal(f->plan.pty, 1);
    assert_int_equal(f->plan.stdin_len, 3);
    assert_string_equal(f->plan.stdin_data, "in\n");

    assert_int_equal(plan(f, 0,
                          "{\"template\": \"echo\", \"args\": {\"msg\": \"x\","
                          " \"flag\": true}}"),
                     0);
    assert_string_equal(f->plan.argv[2], "true");
    assert_int_equal(plan(f, 0, "{\"template\": \"echo\", \"args\": {\"msg\": \"x\"}}"), 0);
    assert_string_equal(f->plan.argv[2], "false");
}

static void test_plan_restart_and_shell(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(plan(f, 0, "{\"template\": \"worker\", \"args\": {\"queue\": \"mail\"}}"), 0);
    assert_string_equal(f->plan.argv[2], "exec ./worker --queue mail ${HOME}");
    assert_int_equal(f->plan.shell, 1);
    assert_int_equal(f->plan.restart, PC_RESTART_ON_FAILURE);
    assert_int_equal(f->plan.max_attempts, 5);
    assert_int_equal(f->plan.backoff_ms, 250);
    /* the template allows only DEBUG from requests */
    assert_int_equal(plan(f, 0,
                          "{\"template\": \"worker\", \"args\": {\"queue\": \"a\"},"
                          " \"env\": {\"DEBUG\": \"1\"}}"),
                     0);
    assert_int_equal(plan(f, 0,
                          "{\"template\": \"worker\", \"args\": {\"queue\": \"a\"},"
                          " \"env\": {\"OTHER\": \"1\"}}"),
                     PC_EINVAL);
    assert_non_null(strstr(f->err, "does not take \"OTHER\""));
}

static void test_injection_inert(void **state)
{
    struct fixture *f = *state;
    static const char *const refused[] = {
        "{\"template\": \"build\", \"args\": {\"dir\": \"; rm -rf /\"}}",
        "{\"template\": \"build\", \"args\": {\"dir\": \"$(id)\"}}",
        "{\"template\": \"build\", \"args\": {\"dir\": \"`id`\"}}",
        "{\"template\": \"build\", \"args\": {\"dir\": \"../etc\"}}",
        "{\"template\": \"build\", \"args\": {\"dir\": \"a/../../etc\"}}",
        "{\"template\": \"build\", \"args\": {\"dir\": \"..\"}}",
        "{\"template\": \"build\", \"args\": {\"dir\": \"-f/etc/passwd\"}}",
        "{\"template\": \"build\", \"args\": {\"dir\": \"a\\nb\"}}",
        "{\"template\": \"build\", \"args\": {\"jobs\": \"2; id\"}}",
        "{\"template\": \"build\", \"args\": {\"jobs\": 100}}",
        "{\"template\": \"build\", \"args\": {\"jobs\": 1.5}}",
        "{\"template\": \"build\", \"args\": {\"target\": \"a b\"}}",
        "{\"template\": \"build\", \"args\": {\"nope\": \"x\"}}",
        "{\"template\": \"build\", \"args\": [\"dir=a\", \"dir=b\"]}",
        "{\"template\": \"echo\", \"args\": {\"flag\": \"yes\", \"msg\": \"x\"}}",
        "{\"template\": \"echo\"}",
        "{\"template\": \"worker\", \"args\": {\"queue\": \"a; id\"}}",
        "{\"template\": \"bulid\"}",
        "{\"argv\": [\"id\"]}",
        "{\"template\": \"build\", \"env\": {\"LD_PRELOAD\": \"/tmp/x.so\"}}",
        "{\"template\": \"build\", \"env\": {\"PATH\": \"/tmp\"}}",
        "{\"template\": \"build\", \"env\": {\"PIPECAST_JOB_ID\": \"x\"}}",
        "{\"template\": \"build\", \"env\": {\"MAKEFLAGS\": \"x\"}}",
        "{\"template\": \"build\", \"env\": {\"MAKEFILES\": \"/tmp/x\"}}",
        "{\"template\": \"build\", \"cwd\": \"/tmp\"}",
        "{\"template\": \"echo\", \"args\": {\"msg\": \"x\"}, \"env\": {\"A\": \"1\"}}",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        if (plan(f, 0, refused[i]) == 0)
            fail_msg("case %zu accepted: %s", i, refused[i]);
    assert_int_equal(plan(f, 0, "{\"template\": \"bulid\"}"), PC_EINVAL);
    assert_string_equal(f->err, "unknown template \"bulid\"");
    assert_int_equal(plan(f, 0, "{\"argv\": [\"id\"]}"), PC_EINVAL);
    assert_non_null(strstr(f->err, "--allow-any-command"));
    assert_int_equal(plan(f, 0, "{\"template\": \"build\", \"args\": {\"dir\": \"../etc\"}}"),
                     PC_EINVAL);
    assert_non_null(strstr(f->err, "\"..\" path segments"));

    /* a value accepted by its pattern is still one argv element, never a shell word */
    assert_int_equal(
        plan(f, 0, "{\"template\": \"echo\", \"args\": {\"msg\": \"$(id); rm -rf / `x` {dir}\"}}"),
        0);
    assert_int_equal(argc_of(f->plan.argv), 3);
    assert_string_equal(f->plan.argv[1], "msg=$(id); rm -rf / `x` {dir}");
    /* allow_dash / allow_dotdot open what the default refuses */
    assert_int_equal(plan(f, 0, "{\"template\": \"path\", \"args\": {\"p\": \"-l/../x\"}}"), 0);
    assert_string_equal(f->plan.argv[1], "-l/../x");
    /* "..." and "a..b" are not ".." segments */
    assert_int_equal(plan(f, 0, "{\"template\": \"build\", \"args\": {\"dir\": \"a..b/...\"}}"), 0);
}

static void test_plan_any_command(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(plan(f, 1,
                          "{\"argv\": [\"sh\", \"-c\", \"echo {x}\"],"
                          " \"env\": {\"LD_LIBRARY_PATH\": \"/opt\"}, \"cwd\": \"/tmp\","
                          " \"limits\": {\"as_mb\": 8192}}"),
                     0);
    assert_int_equal(argc_of(f->plan.argv), 3);
    assert_string_equal(f->plan.argv[2], "echo {x}"); /* no substitution in raw argv */
    assert_null(f->plan.template);
    assert_string_equal(f->plan.cwd, "/tmp");
    assert_string_equal(env_get(f->plan.envp, "LD_LIBRARY_PATH"), "/opt");
    assert_int_equal(f->plan.limits.as_mb, 4096); /* capped by limits_max */
    assert_int_equal(f->plan.timeout_s, 120);

    /* no config at all */
    pc_job_plan_free(&f->plan);
    cJSON *req = cJSON_Parse("{\"argv\": [\"true\"]}");
    assert_int_equal(pc_job_plan_build(NULL, 1, req, NULL, &f->plan, f->err, sizeof(f->err)), 0);
    assert_string_equal(env_get(f->plan.envp, "HOME"), "/");
    assert_int_equal(f->plan.timeout_s, 0);
    assert_int_equal(f->plan.limits.cpu_s, 0);
    cJSON_Delete(req);
    pc_job_plan_free(&f->plan);
    pc_job_plan_free(&f->plan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_shape),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test_setup_teardown(test_describe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan_template, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan_defaults_and_optional, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan_restart_and_shell, setup, teardown),
        cmocka_unit_test_setup_teardown(test_injection_inert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan_any_command, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
