/*
 * The sink's delivery helpers: a NULL sink or a NULL op drops the event, so
 * producers never check.
 */
#include "sink.h"

#include <stddef.h>

const char *decision_name(enum decision d)
{
    switch (d) {
    case DECISION_ALLOW:
        return "allow";
    case DECISION_BLOCK:
        return "block";
    case DECISION_LOG:
        return "log";
    }
    return "unknown";
}

void sink_net(const struct sink *s, const struct net_event *ev)
{
    if (s && s->ops && s->ops->net)
        s->ops->net(s->opaque, ev);
}

void sink_dns(const struct sink *s, const struct dns_event *ev)
{
    if (s && s->ops && s->ops->dns)
        s->ops->dns(s->opaque, ev);
}

void sink_model(const struct sink *s, const struct model_call *ev)
{
    if (s && s->ops && s->ops->model)
        s->ops->model(s->opaque, ev);
}
