/*
 * The read side of sessions in the daemon's API: the telemetry lists,
 * stats and read-only SQL under /api/v1/sessions/{id}/, and the user's
 * policy file at /api/v1/policy. Handlers for api.c's route table; each
 * works on the session directory whether or not its VM runs.
 */
#ifndef CAPSEM_SERVER_API_TELEMETRY_H
#define CAPSEM_SERVER_API_TELEMETRY_H

#include "api.h"

/* GET /api/v1/sessions/{id}/{net-events,dns-events,model-calls,tool-calls,file-events}. */
int api_get_session_events(struct api *api, const struct api_req *req, struct api_resp *resp);
/* GET /api/v1/sessions/{id}/stats. */
int api_get_session_stats(struct api *api, const struct api_req *req, struct api_resp *resp);
/* POST /api/v1/sessions/{id}/query with {"sql": "..."}. */
int api_post_session_query(struct api *api, const struct api_req *req, struct api_resp *resp);
/* GET /api/v1/policy. */
int api_get_policy(struct api *api, const struct api_req *req, struct api_resp *resp);
/* PUT /api/v1/policy: the whole user config.json. */
int api_put_policy(struct api *api, const struct api_req *req, struct api_resp *resp);

/*
 * $CAPSEM_HOME (default ~/.capsem) into buf. 0, or -ENAMETOOLONG.
 */
int api_capsem_home(char *buf, size_t len);

#endif
