/*-------------------------------------------------------------------------
 * url.h
 *		The sidecar's base URL, http://host:port (url.c).
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_URL_H
#define TASKEVENTS_URL_H

#define TE_BASE_URL_LEN 320

extern bool te_base_url(const char *host, int port, char *url);

#endif							/* TASKEVENTS_URL_H */
