from __future__ import annotations

from django.contrib import admin, messages

from server.core.exceptions import ApplicationError
from server.jobs.models import Job
from server.jobs.services import job_cancel


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "status",
        "study",
        "progress_step",
        "progress_total",
        "progress_message",
        "attempts",
        "worker",
        "heartbeat_at",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "kind", "queue", "study"]
    search_fields = ["id", "error", "progress_message", "worker"]
    readonly_fields = [field.name for field in Job._meta.fields] + ["metrics"]
    actions = ["cancel_jobs"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False  # jobs are started by services (dashboard actions, the API, the scheduler)

    @admin.action(description="Cancel the selected jobs")
    def cancel_jobs(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        for job in queryset:
            try:
                job_cancel(job_id=job.id)
            except ApplicationError as error:
                self.message_user(request, error.message, messages.WARNING)
