/* sluice-demo handlers (routes.c). arg is the demo_app. */
#ifndef SLUICE_DEMO_ROUTES_H
#define SLUICE_DEMO_ROUTES_H

#include "sluice/mux.h"
#include "sluice/server.h"

void demo_create_user(sl_req *req, sl_resp *resp, void *arg);
void demo_get_user(sl_req *req, sl_resp *resp, void *arg);
void demo_webhook(sl_req *req, sl_resp *resp, void *arg);
void demo_search(sl_req *req, sl_resp *resp, void *arg);
void demo_batch(sl_req *req, sl_resp *resp, void *arg);
void demo_healthz(sl_req *req, sl_resp *resp, void *arg);
void demo_webhook_receiver(sl_req *req, sl_resp *resp, void *arg); /* webhook.c */

#endif
