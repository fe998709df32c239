/* jobs_api.h -- the job endpoints of pipecast-gateway (docs/jobs.md, "Gateway job API").
 *
 * api.c's router hands every request whose path gw_jobs_api_match() accepts to
 * gw_jobs_api_handle(); everything else about jobs (validation, Redis keys,
 * control messages) stays inside jobs_api.c.
 */
#ifndef PC_GW_JOBS_API_H
#define PC_GW_JOBS_API_H

struct mg_connection;
struct gw_ctx;
struct gw_jobs;

/* Job ids: 16 lowercase hex characters. */
#define GW_JOB_ID_LEN 16

/*
 * The job API's shared state: a short-lived snapshot of the live runners, so
 * that a burst of submits does not SCAN the keyspace once each. Thread-safe.
 * @return the state, or NULL when out of memory (the API then reads Redis
 * every time). gw_jobs_free(NULL) is a no-op.
 */
struct gw_jobs *gw_jobs_new(void);
void gw_jobs_free(struct gw_jobs *j);

/*
 * @return 1 when @p uri (the raw local URI) belongs to the job API:
 * /api/jobs[/...], /api/sessions[/...], /api/runners, /api/templates.
 */
int gw_jobs_api_match(const char *uri);

/* Answer one request that gw_jobs_api_match() accepted. @return the HTTP status sent. */
int gw_jobs_api_handle(struct mg_connection *conn, struct gw_ctx *gw);

#endif
