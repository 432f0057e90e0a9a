from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "tradebot: model lifecycle"
admin.site.site_title = "tradebot"
admin.site.index_title = "Models, validations, deployments and audit"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", include("models_registry.api.urls")),
]

# Under /api/ a missing page is an RFC 9457 problem document; elsewhere Django's own page.
handler404 = "models_registry.api.views.api_not_found"
