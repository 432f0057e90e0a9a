from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

admin.site.site_header = "tradebot: model lifecycle"
admin.site.site_title = "tradebot"
admin.site.index_title = "Models, validations, deployments and audit"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
]
