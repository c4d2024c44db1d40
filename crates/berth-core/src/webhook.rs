//! Forge webhooks: signature verification and push-event parsing (GitHub, Gitea, Forgejo, GitLab, generic).
