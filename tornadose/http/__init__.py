"""Framework-neutral HTTP decisions (no I/O): answers, admission of subscribers,
publishing, channels and their routes and documents, the same for every adapter."""
