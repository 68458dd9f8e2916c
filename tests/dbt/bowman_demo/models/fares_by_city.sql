select city, count(*) as trips, sum(fare) as revenue
from {{ ref('trips') }}
group by city
