"""The scheduler: leases queued jobs to compute workers over their health
stream, renews live workers' leases, reaps dead ones and relays cancels."""
